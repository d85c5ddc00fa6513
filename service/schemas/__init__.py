"""Request and response bodies of the REST API, one module per resource as in service/routes/ (common: the
collection-name type, the error body and health; query; chat; documents; jobs: ingest jobs, audits and
experiments; feedback: the query log and labelling; ui). Request bodies that only one route reads live with
that route."""
