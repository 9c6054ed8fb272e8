"""Grading for the parameter-management course: intake -> sandboxed execution -> scoring -> reports."""
import sys

# jsonschema imports rfc3987_syntax, when installed, to check IRI formats, and that
# compiles a grammar for two seconds in every process that reads a notebook. Nothing in
# grading checks an IRI: make the import fail fast, as if the package were absent.
sys.modules.setdefault("rfc3987_syntax", None)
