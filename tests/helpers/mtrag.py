"""A real slice of MTRAG (the passages around two judged follow-ups), made at run time from ../shared, and the
two conversations the rewrite tests ask: a follow-up that needs its history, and a change of subject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.rewrite import Turn
from tests.conftest import SHARED, write_corpus

MTRAG = SHARED / "mtrag_conv"

# A follow-up (MTRAG 5f07a39c...<::>3): "When did it take place?" alone finds another competition; with the
# previous user turn it finds the one passage judged relevant.
FOLLOW_UP = {
    "history": [Turn("user", "Was the competition only about drama?"), Turn("assistant", "No, it also had music.")],
    "question": "When did it take place?",
    "relevant": "837276776_5495-6381-0-886",
}
# A change of subject inside a conversation (MTRAG 6d5958e4...<::>2, multi_turn N/A): joining ruins it.
SWITCH = {
    "history": [Turn("user", "How do I get to the Rocky Pond Mountains from my location?")],
    "question": "Tell me something about the Demography of the city of California.",
    "relevant": "a44b35108fdd6f71-3030-3742",
}
# Those two relevant passages and the passages either way of asking ranks near them in the full corpus.
SLICE = """137bcc1fc50c7c4c-2-2083 227562-0-1232 285fe3dbf58502a3-2894-4972 351d62c973f5a12e-2-2050
36b7136502b2dd4e-1511-3485 41168a49b304126a-9796-12013 4ca4f6c354dd369d-45569-47579 56df24d8b0785408-2-2170
5c71e6545742ee6d-13584-15653 5c71e6545742ee6d-15163-17271 62964e3a38783558-23004-25068 72c7fac84f54ad1e-2-1991
78d445a57a406361-2-2260 792d6c04fa5e52e8-11124-13055 79594f3dadc4e72c-1435-2562 7d4d64e7f6aff125-3194-5132
800606077_2642-3345-0-699 819151867_17461-18060-0-597 821378931_12872-14017-0-1145 827511898_5035-5553-0-518
834324633_34077-35207-0-1130 834494107_17127-18103-0-976 834494107_18311-18603-0-292 837276776_10268-10676-0-406
837276776_5495-6381-0-886 837276776_7652-8353-0-700 843539824_24681-31248-5453-6564 846499272_66983-67197-0-214
850581185_1481-2154-0-673 852859365_1626-2287-0-661 931b40532cbc7ee0-1806-3526 996844e4b20e6000-1292-2971
996844e4b20e6000-2-1706 a44b35108fdd6f71-3030-3742 a9f98ebeeb44016b-2964-4953 c8db6e06ff46669e-50302-52227
d3feb09e0ecafbac-1751-3461 e1fb7e359e42d556-13332-15599 fe8c82cdf4a51f27-3063-5393 fe8c82cdf4a51f27-4768-6684
ibmcld_02872-7-1746""".split()


def mtrag_slice(path: Path, ids: list[str] = SLICE) -> Path:
    """The named MTRAG passages as a BEIR corpus.jsonl (made at run time; the data stay in ../shared)."""
    if not (MTRAG / "corpus.jsonl").exists():
        pytest.skip(f"MTRAG not found at {MTRAG}")
    wanted, rows = set(ids), []
    for line in open(MTRAG / "corpus.jsonl"):
        row = json.loads(line)
        if row["_id"] in wanted:
            rows.append(row)
    assert len(rows) == len(wanted)
    return write_corpus(path, rows)
