//! Rebuilds the engine when a migration is added or changed: `sqlx::migrate!`
//! embeds the migrations at compile time, and cargo does not otherwise
//! watch the folder, so a new migration would silently be left out.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
