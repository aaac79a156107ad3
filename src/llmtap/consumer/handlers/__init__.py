"""The consumer's handlers, one per file, run in the order ``consumer.chain.build_chain`` gives."""
