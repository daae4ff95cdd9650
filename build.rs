//! Rebuilds the binary when a migration or template changes: both are embedded
//! at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
}
