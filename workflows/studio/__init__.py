"""The process owners' studio as pure functions over process files: checks before deploy, the diff of two
versions, and an in-memory simulation for process tests and replay. No database, no Flask."""
