"""Keboola Storage API client, cloud-storage downloads and typing, shared by the connector and the server.

The connector (connectors/keboola/extractor.py) extracts; the server's source
type (services/source_types.py) checks credentials and discovers tables with
the same client, so both see Keboola the same way.
"""
