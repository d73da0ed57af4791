"""`gpucredit serve`: the read-only lender and auditor web app (docs/web.md)."""
