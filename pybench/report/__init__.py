"""Reports, split by job: `selection` (which records, grouped by cell identity), `markdown` (the
seed's tables and the README block), `terminal` (rich tables), `format` (numbers and names)."""
