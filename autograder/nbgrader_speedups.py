"""Costs nbgrader pays again for every notebook, paid once per process instead.

Each change keeps nbgrader's behaviour and results; importing this module applies them.
"""
import functools
import json

import jsonschema
import nbgrader.api
import nbgrader.nbgraderformat.common
import sqlalchemy
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from nbgrader.dbutil import ALEMBIC_DIR


@functools.lru_cache(maxsize=None)
def create_engine(url, **kwargs):
    """nbgrader opens a new SQLAlchemy engine for each of the ~10 Gradebook objects it uses
    per notebook, and each new engine compiles every query again: keep one per URL."""
    engine = sqlalchemy.create_engine(url, **kwargs)
    # Gradebook.close() disposes of the engine, closing its pooled connections, so the
    # next Gradebook would connect again: this engine lives as long as the process.
    engine.dispose = lambda close=True: None
    if engine.dialect.name == "sqlite":
        # Write-ahead log: commits (dozens per notebook) skip a sync each, readers never
        # block the writer; a crash may lose the last commits, never corrupt the file.
        sqlalchemy.event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(connection, _):
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


_create_all = nbgrader.api.Base.metadata.create_all


@functools.lru_cache(maxsize=None)
def _create_all_once(bind):
    _create_all(bind=bind)


def create_all(bind=None, **kwargs):
    """Gradebook() checks that every table exists each time it opens; once per engine will do."""
    if kwargs:
        return _create_all(bind=bind, **kwargs)
    _create_all_once(bind)


def alembic_head():
    """The gradebook schema's version, which nbgrader records in a new gradebook by running
    the `alembic` command (4 s); read from the same migration scripts in this process."""
    config = AlembicConfig()
    config.set_main_option("script_location", ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


@functools.lru_cache(maxsize=None)
def _metadata_validator(schema_json):
    schema = json.loads(schema_json)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def validate(instance, schema):
    """jsonschema.validate, which checks the schema itself on every call (nbgrader calls it
    for every cell, twice per notebook), with the schema checked once."""
    error = jsonschema.exceptions.best_match(
        _metadata_validator(json.dumps(schema, sort_keys=True)).iter_errors(instance))
    if error is not None:
        raise error


class _Jsonschema:
    """What nbgrader's metadata validator uses of jsonschema."""
    validate = staticmethod(validate)


nbgrader.api.create_engine = create_engine
nbgrader.api.Base.metadata.create_all = create_all
nbgrader.api.get_alembic_version = alembic_head
nbgrader.nbgraderformat.common.jsonschema = _Jsonschema
