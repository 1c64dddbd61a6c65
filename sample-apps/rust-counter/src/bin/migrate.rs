//! The release phase: creates the counter's table (once) before a release goes live. It shares the web app's
//! PostgreSQL client by path, so that this command is not linked with the web app's `wasi:http` export.

#[path = "../pg.rs"]
mod pg;
#[path = "../url.rs"]
mod url;

fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: attach a PostgreSQL add-on");
    let mut db = pg::Connection::open(&url).unwrap_or_else(|e| fail(&e));
    db.query(
        "CREATE TABLE IF NOT EXISTS counter (id int PRIMARY KEY, n bigint NOT NULL); \
         INSERT INTO counter VALUES (1, 0) ON CONFLICT DO NOTHING",
    )
    .unwrap_or_else(|e| fail(&e));
    println!("migrated: the counter table is ready");
}

fn fail(why: &str) -> ! {
    eprintln!("migration failed: {why}");
    std::process::exit(1);
}
