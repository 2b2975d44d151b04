//! The two migration folders are kept in step by hand; this test holds them to it: after
//! `efen db migrate`, PostgreSQL and SQLite have the same tables, the same views and the same
//! columns in each.

mod common;

use std::collections::BTreeMap;

use common::{Backend, World};
use sqlx::AnyPool;

/// Table or view name → (kind, column names in order).
type Schema = BTreeMap<String, (String, Vec<String>)>;

/// The schema as a backend's catalogue tells it: `relations` lists (name, 'table' | 'view'),
/// `columns` lists one relation's column names in order, its name bound to `$1`.
async fn schema(pool: &AnyPool, relations: &'static str, columns: &'static str) -> Schema {
    let relations: Vec<(String, String)> = sqlx::query_as(relations).fetch_all(pool).await.unwrap();
    let mut schema = Schema::new();
    for (name, kind) in relations {
        let names: Vec<(String,)> = sqlx::query_as(columns).bind(&name).fetch_all(pool).await.unwrap();
        schema.insert(name, (kind, names.into_iter().map(|(c,)| c).collect()));
    }
    schema
}

const POSTGRES_RELATIONS: &str = "SELECT table_name::TEXT, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END
     FROM information_schema.tables WHERE table_schema = 'public'";
const POSTGRES_COLUMNS: &str = "SELECT column_name::TEXT FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position";
const SQLITE_RELATIONS: &str =
    "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'";
const SQLITE_COLUMNS: &str = "SELECT name FROM pragma_table_info($1) ORDER BY cid";

#[tokio::test]
async fn postgres_and_sqlite_have_the_same_tables_views_and_columns() {
    let mut schemas = Vec::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let world = World::new(backend).await;
        assert_eq!(world.run(&["db", "migrate"]).status.code(), Some(0));
        let pool = world.pool().await;
        let mut schema = match backend {
            Backend::Postgres => schema(&pool, POSTGRES_RELATIONS, POSTGRES_COLUMNS).await,
            Backend::Sqlite => schema(&pool, SQLITE_RELATIONS, SQLITE_COLUMNS).await,
        };
        // sqlx's own bookkeeping differs by backend and is not ours.
        schema.remove("_sqlx_migrations");
        pool.close().await;
        world.close().await;
        schemas.push(schema);
    }
    let (postgres, sqlite) = (&schemas[0], &schemas[1]);
    assert!(postgres.contains_key("results") && postgres.contains_key("failures"), "{postgres:?}");
    let names = |s: &Schema| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(postgres), names(sqlite), "the same tables and views");
    for (name, (kind, columns)) in postgres {
        let (sqlite_kind, sqlite_columns) = &sqlite[name];
        assert_eq!(kind, sqlite_kind, "{name} is a {kind} in PostgreSQL and a {sqlite_kind} in SQLite");
        assert_eq!(columns, sqlite_columns, "the columns of {name}");
    }
}
