"""Storage: every line of SQL, migrations, and the backends behind the store port."""
