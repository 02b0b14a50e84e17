"""Seed documents: Markdown files about agent-server itself, loaded into the knowledge base
once, on the first start that sees each (`DocumentStore.load_seed_documents`), so a new
user's first "search for fallback" finds something. Set `KNOWLEDGE_SEED=false` to skip."""
