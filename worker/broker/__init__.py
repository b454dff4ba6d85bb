"""The broker side of the worker: topology, headers, connection, publishing with confirms."""
