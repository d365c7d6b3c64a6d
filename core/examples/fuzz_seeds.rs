//! Write the fuzz seeds (valid inputs of every target, taken from small real repositories)
//! into a corpus directory, one file per input named by its SHA-256, as libFuzzer names them:
//!
//!     cargo run -p containerarchive-core --example fuzz_seeds -- core/fuzz/corpus

use containerarchive_core::fuzzing::seeds;
use containerarchive_core::Id;

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "core/fuzz/corpus".into());
    let mut written = 0;
    for (target, input) in seeds() {
        let dir = std::path::Path::new(&root).join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(Id::sha256(&input).to_hex()), &input)?;
        written += 1;
    }
    println!("{written} seeds written under {root}");
    Ok(())
}
