//! Rebuild when a migration changes: `sqlx::migrate!` embeds migrations/ at compile time, and
//! cargo does not see files that a macro reads.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
