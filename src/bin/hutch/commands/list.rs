use std::path::Path;

use hutch::container::Container;

#[derive(clap::Args)]
pub struct Args {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let mut rows = Vec::new();
    for id in hutch::state::ids(root)? {
        // A container another command holds right now (a create or delete under way) is skipped
        // rather than waited for.
        if let Ok(Some(c)) = Container::try_load(root, &id) {
            rows.push(c.oci_state());
        }
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::Value::Array(rows)),
        Format::Table => {
            let cols = ["id", "pid", "status", "bundle", "created", "owner"];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| r[c].as_str().map(str::to_string).unwrap_or_else(|| r[c].to_string()))
                        .collect()
                })
                .collect();
            let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
            let widths: Vec<usize> = (0..cols.len())
                .map(|i| {
                    cells.iter().map(|r| r[i].len()).chain([header[i].len(), 10]).max().unwrap_or(10) + 2
                })
                .collect();
            for row in std::iter::once(&header).chain(cells.iter()) {
                let line: String = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                println!("{}", line.trim_end());
            }
        }
    }
    Ok(0)
}
