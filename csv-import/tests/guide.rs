//! The plugin author guide shows this crate's code: every block marked
//! `<!-- from PATH -->` in `docs/PLUGIN_AUTHOR_GUIDE.md` must appear, verbatim, in `PATH`
//! (relative to the workspace root), so the guide cannot drift from the code it quotes.

use std::path::Path;

const GUIDE: &str = "docs/PLUGIN_AUTHOR_GUIDE.md";

/// The quoted blocks of `guide`: (line of the marker, path, the block's text).
fn quoted_blocks(guide: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = guide.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- from ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().map(|(_, l)| l).unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{GUIDE}:{}: a code block must follow the marker",
            n + 1
        );
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((n + 1, path.to_owned(), body.join("\n")));
    }
    blocks
}

#[test]
fn every_quoted_block_of_the_guide_is_in_the_file_it_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join(GUIDE)).unwrap();
    let blocks = quoted_blocks(&guide);
    assert!(blocks.len() >= 8, "only {} quoted blocks", blocks.len());
    for (line, path, block) in blocks {
        let source = std::fs::read_to_string(root.join(&path))
            .unwrap_or_else(|e| panic!("{GUIDE}:{line}: cannot read {path}: {e}"));
        assert!(
            source.contains(&block),
            "{GUIDE}:{line}: this block is not in {path} any more; copy it again:\n{block}"
        );
    }
}
