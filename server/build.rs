//! With the `embed-site` feature, compiles the built dashboard into the
//! binary. The site must be built first: `cargo leptos build --release
//! --split --frontend-only`, then `--server-only --bin-features
//! embed-site`. (One `cargo leptos build` builds both at once, and this
//! script can run before the site exists.)

fn main() {
    #[cfg(feature = "embed-site")]
    embed_site();
}

#[cfg(feature = "embed-site")]
fn embed_site() {
    use std::path::PathBuf;

    const VAR: &str = "DROVER_EMBED_SITE_DIR";
    println!("cargo::rerun-if-env-changed={VAR}");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = match std::env::var_os(VAR) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target/site"),
    };
    let entry = dir.join("pkg/drover.js");
    if !entry.is_file() {
        panic!(
            "the `embed-site` feature needs the built dashboard, but {} is missing: \
             run `cargo leptos build --release --split --frontend-only` first, or set {VAR} \
             to the site directory",
            entry.display()
        );
    }
    memory_serve::load_directory_with_embed(dir, true);
}
