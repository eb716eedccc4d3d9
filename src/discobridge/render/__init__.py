"""Renderers turn a snapshot's services into documents and bytes, once per snapshot."""
