"""Alembic environment: runs on the engine watcher's Store hands over (see store.upgrade).

The whole upgrade is one transaction that first takes a database-wide lock, so two
processes starting together on a new database (`watcher run` and a cron `watcher poll`)
migrate one after the other: the second finds the schema at head and does nothing.
"""

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from watcher.store import metadata, watchers_own

#: Key of the PostgreSQL advisory lock held while migrating (any constant unique to watcher).
MIGRATION_LOCK = 0x77617463  # "watc"

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` command line: take the URL from the ini file
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )


def run(connection: Connection) -> None:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # watcher's engine begins SQLite transactions as the option says: IMMEDIATE takes
        # the write lock up front, and a second migrator waits for it (busy timeout).
        connection = connection.execution_options(sqlite_begin="IMMEDIATE")
    with connection.begin():
        if dialect == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        # Begun here, the transaction is "external" to Alembic: every migration runs in it
        # and the version is read after the lock is held.
        context.configure(
            connection=connection,
            target_metadata=metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=dialect == "sqlite",
            compare_type=True,
            include_name=watchers_own,
        )
        with context.begin_transaction():
            context.run_migrations()


with engine.connect() as connection:
    if connection.dialect.name != "sqlite":
        run(connection)
    else:
        # Batch mode drops the table it rebuilds: with foreign keys on, that deletes every
        # row referring to it (a column dropped from entries would empty hits and outbox).
        # The setting can only change outside a transaction, hence on the driver's connection.
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            run(connection)
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows that refer to nothing: {broken[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
