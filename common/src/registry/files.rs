//! Path rules for `function_folder` / `base_function_file_name` and the filesystem checks
//! run when a functions dir is given: the folder exists (and does not escape the functions
//! dir through a symlink), the base file exists inside it, and a rust folder is a crate.

use std::path::{Component, Path};

use super::fields::Ctx;
use super::spec::Language;
use super::tree::Pos;

/// Why `p` is not an acceptable relative path inside the functions dir, if it is not.
pub(super) fn relative_path_problem(p: &str) -> Option<String> {
    if p.contains('\0') {
        return Some("must not contain NUL characters".into());
    }
    if p.starts_with('/') || p.starts_with('\\') || Path::new(p).is_absolute() {
        return Some(format!(
            "`{p}` must be a relative path (inside the functions directory), not an absolute one"
        ));
    }
    let mut normal = 0;
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                return Some(format!(
                    "`{p}` must not contain `..`: it must stay inside the functions directory"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Some(format!("`{p}` must be a relative path"))
            }
        }
    }
    if normal == 0 {
        return Some(format!(
            "`{p}` does not name anything inside the functions directory"
        ));
    }
    None
}

/// Folder and base file exist (and stay inside the functions dir); rust folders are crates
/// (`language` is `None` when it was itself invalid: the paths are still checked).
pub(super) fn check_files(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    folder: &str,
    folder_pos: Pos,
    base: Option<&(String, Pos)>,
    language: Option<Language>,
) {
    const FOLDER: &str = "configuration.function_folder";
    const BASE: &str = "configuration.base_function_file_name";
    let folder_path = dir.join(folder);
    match std::fs::metadata(&folder_path) {
        Err(_) => {
            ctx.err(
                folder_pos,
                Some(FOLDER),
                format!(
                    "folder `{folder}` does not exist in the functions directory `{}`",
                    dir.display()
                ),
            );
            return;
        }
        Ok(m) if !m.is_dir() => {
            ctx.err(
                folder_pos,
                Some(FOLDER),
                format!("`{}` is not a folder", folder_path.display()),
            );
            return;
        }
        Ok(_) => {}
    }
    let root = std::fs::canonicalize(dir).ok();
    let escapes = |p: &Path| match (&root, std::fs::canonicalize(p)) {
        (Some(root), Ok(real)) => !real.starts_with(root),
        _ => false,
    };
    if escapes(&folder_path) {
        ctx.err(
            folder_pos,
            Some(FOLDER),
            format!(
                "folder `{folder}` resolves outside the functions directory `{}` (through a symlink)",
                dir.display()
            ),
        );
        return;
    }
    if let Some((base, base_pos)) = base {
        let base_path = folder_path.join(base);
        match std::fs::metadata(&base_path) {
            Err(_) => ctx.err(
                *base_pos,
                Some(BASE),
                format!(
                    "base file `{base}` does not exist in folder `{}`",
                    folder_path.display()
                ),
            ),
            Ok(m) if !m.is_file() => ctx.err(
                *base_pos,
                Some(BASE),
                format!("`{}` is not a file", base_path.display()),
            ),
            Ok(_) if escapes(&base_path) => ctx.err(
                *base_pos,
                Some(BASE),
                format!("base file `{base}` resolves outside the functions directory (through a symlink)"),
            ),
            Ok(_) => {}
        }
    }
    if language == Some(Language::Rust) && !folder_path.join("Cargo.toml").is_file() {
        ctx.err(
            folder_pos,
            Some(FOLDER),
            format!(
                "a rust function folder must be a Cargo crate, but `Cargo.toml` was not found in `{}`",
                folder_path.display()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path_problem("hello"), None);
        assert_eq!(relative_path_problem("a/b"), None);
        assert_eq!(relative_path_problem("./a"), None);
        assert!(relative_path_problem("../a").is_some_and(|m| m.contains("..")));
        assert!(relative_path_problem("a/../../b").is_some_and(|m| m.contains("..")));
        assert!(relative_path_problem("/etc").is_some_and(|m| m.contains("relative")));
        assert!(relative_path_problem(".").is_some());
    }
}
