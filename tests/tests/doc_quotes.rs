//! The plugin author guide shows this crate's code, the external plugin guide the examples of
//! `nebula-grpc` and the Python host plugin: every block marked `<!-- from PATH -->` in those
//! documents must appear, verbatim, in `PATH` (relative to the workspace root), so the
//! documents cannot drift from the code they quote.

use std::path::Path;

/// The documents that quote code, and how many quoted blocks each has at least.
const DOCUMENTS: [(&str, usize); 2] = [
    ("docs/PLUGIN_AUTHOR_GUIDE.md", 8),
    ("docs/EXTERNAL_PLUGINS.md", 2),
];

/// The quoted blocks of `guide`: (line of the marker, path, the block's text).
fn quoted_blocks(doc: &str, guide: &str) -> Vec<(usize, String, String)> {
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
            "{doc}:{}: a code block must follow the marker",
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
fn every_quoted_block_of_the_guides_is_in_the_file_it_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (doc, at_least) in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let blocks = quoted_blocks(doc, &text);
        assert!(
            blocks.len() >= at_least,
            "{doc}: only {} quoted blocks",
            blocks.len()
        );
        for (line, path, block) in blocks {
            let source = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|e| panic!("{doc}:{line}: cannot read {path}: {e}"));
            assert!(
                source.contains(&block),
                "{doc}:{line}: this block is not in {path} any more; copy it again:\n{block}"
            );
        }
    }
}
