"""The service's HTTP protocol under uvicorn (`rag serve` and the tests' live servers pass it as `http=`): uvicorn's
own, with the guard against slow clients that uvicorn lacks.

uvicorn's HTTP/1.1 protocols (httptools, h11) have a keep-alive timeout, armed only after a response: a connection that
opens and sends nothing, or dribbles its request head a byte at a time (a "slowloris"), or stops half-way
through a body, holds its connection (one of `limit_concurrency`'s slots) for as long as it likes, and 230 of
them answered every other caller 503. `SlowClientProtocol` closes, as nginx's `client_header_timeout` and
`client_body_timeout` do:

- a connection whose request head is not complete `client_header_timeout_s` after it opened (or after the
  previous response ended): the time a client has to send its request line and headers, whatever it dribbles;
- a request whose body has sent nothing for `client_body_timeout_s` (between two reads, as nginx; a client
  that keeps sending is never cut off, so a large upload on a slow link goes through).

The route sees a closed connection as a client that left (`http.disconnect`).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import Settings


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (uvicorn's default where httptools is installed, as uvicorn[standard]
    installs it; on h11 a retrieval-only request measured the same CPU within noise: 12.0/10.7 ms against
    11.3/10.9, alternated) with a deadline for the request head and an idle limit for the body."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:  # a request head is complete
            self._cancel("_head_timer")
        if self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._arm_body()  # the body's idle clock starts again with every read
        else:
            self._cancel("_body_timer")

    def on_response_complete(self) -> None:
        self._cancel("_body_timer")
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head()  # the next request's head, if the client sends one, has the same deadline

    def _arm_head(self) -> None:
        self._cancel("_head_timer")
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._too_slow, "request head")

    def _arm_body(self) -> None:
        self._cancel("_body_timer")
        self._body_timer = self.loop.call_later(self.body_timeout_s, self._too_slow, "request body")

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name, None)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _disarm(self) -> None:
        self._cancel("_head_timer")
        self._cancel("_body_timer")

    def _too_slow(self, what: str) -> None:
        if self.transport.is_closing():
            return
        if what == "request head" and self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered (pipelined bytes armed the clock): not a slow head
        if what == "request body" and self.flow.read_paused:
            self._arm_body()  # the app has not read what came (flow control): the wait is ours, not the client's
            return
        self.logger.info("closing a connection from %s: its %s was too slow", self.client, what)
        self.transport.close()


def protocol_for(settings: Settings) -> type[SlowClientProtocol]:
    """The protocol class with this service's time-outs."""
    return type(
        "SlowClientProtocol",
        (SlowClientProtocol,),
        {"header_timeout_s": settings.client_header_timeout_s, "body_timeout_s": settings.client_body_timeout_s},
    )
