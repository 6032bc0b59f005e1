//! Build script: link flags for the `taskyard` binary, nothing else. It
//! generates no code and touches no library or test target.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // A position-independent binary carries one relocation per pointer in
    // its vtables and static tables: 49,000 of them, 1.2 MB of `.rela.dyn`
    // (issue 18's footprint bench). RELR packs the relative ones into a
    // bitmap of a few KB, keeping the binary position-independent. GNU ld
    // since 2.38 and glibc since 2.36 (Debian 12) know it; an older ld
    // warns and ignores the flag, and ld leaves it out where the C
    // library cannot apply it.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
