//! The tar build context: the generated Dockerfile plus the function folder under `function/`.
//! Entries are root-owned with fixed timestamps (so the engine's layer cache works and the
//! function cannot modify its own code at run time); executables keep their execute bit.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SKIP: [&str; 3] = ["target", "__pycache__", ".git"];

pub fn tar(folder: &Path, dockerfile: &str) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(dockerfile.len() as u64, 0o644, tar::EntryType::Regular);
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
    let mut dir = header(0, 0o755, tar::EntryType::Directory);
    b.append_data(&mut dir, "function/", io::empty())?;
    add_dir(&mut b, folder, "function")?;
    b.into_inner()
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, dir: &Path, prefix: &str) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file name {:?} is not UTF-8", e.file_name()),
            ));
        };
        if name.starts_with('.') || SKIP.contains(&name) {
            continue;
        }
        let path = e.path();
        let meta = std::fs::metadata(&path)?;
        let rel = format!("{prefix}/{name}");
        if meta.is_dir() {
            let mut h = header(0, 0o755, tar::EntryType::Directory);
            b.append_data(&mut h, format!("{rel}/"), io::empty())?;
            add_dir(b, &path, &rel)?;
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut h = header(meta.len(), mode, tar::EntryType::Regular);
            b.append_data(&mut h, &rel, std::fs::File::open(&path)?)?;
        }
    }
    Ok(())
}
