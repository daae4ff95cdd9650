//! Rebuilds the binary when a migration or template changes (both are
//! embedded at compile time), and lists every file under `templates/` for
//! `src/platform/mail/templates/sources.rs` to embed, so adding a locale's folder
//! needs no code change.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut out = String::from("&[\n");
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under templates/")
            .to_str()
            .expect("template paths are UTF-8")
            .replace('\\', "/");
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            file.to_str().expect("template paths are UTF-8")
        )
        .expect("write to a string");
    }
    out.push(']');
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("embedded_templates.rs");
    std::fs::write(target, out).expect("write the template list");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read templates/") {
        let path = entry.expect("templates/ entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
