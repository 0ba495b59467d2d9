"""Query adapters over frozen embeddings: the encoder never trains; a small adapter on the query
route does, on embeddings computed once (`vectors`), and the saved model routes queries through it
while documents keep the frozen model's embeddings (`router`)."""
