"""Uploads of the files an execution wrote to the caller's file service."""
