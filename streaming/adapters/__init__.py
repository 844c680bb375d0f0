"""Adapters: each outside system touched in one thin module (boto3 clients, landed files)."""
