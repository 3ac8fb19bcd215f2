//! `fusionizer status`: the live functions of this project, whether they match fusion.toml, and
//! where each is invoked: on Nuclio the function's own URL (the one serve uses), on the local
//! platform its tasks' URLs through the running serve.

use std::collections::BTreeMap;

use super::Context;
use crate::error::{ExitCode, Result};
use crate::platform::Platform;
use crate::schedule::Selection;
use crate::serve::address::{Found, ServeAddress};
use crate::status::{add_kept, compute, optimizer_note, render_text, LiveGrouping, Status};
use crate::ui::{self, OutputFormat, Style};
use crate::workspace::{fuse_selection, open_for, resolve, runtime};

/// `fusionizer status`: against the grouping `selection` picks, or (`None`) the one the live
/// state records.
pub(super) fn command(
    ctx: &Context,
    selection: Option<Selection>,
    output: OutputFormat,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut prepared = open_for(ctx.workspace()?, false)?;
    let observed = rt.block_on(resolve(&mut prepared, selection))?;
    let mut status = compute(prepared.project(), &prepared.artifacts, &observed.owned);
    add_kept(&mut status, &observed.kept);
    status.grouping.clone_from(&prepared.grouping);
    // The note compares the live grouping with fusion.toml's: when the live state made status
    // follow serve's optimizer, fusion.toml's is the one at `0s`.
    let fusion_toml = match prepared.grouping.as_ref().map(|g| g.owner.as_str()) {
        Some("feedback" | "command") => fuse_selection(&prepared.workspace, Selection::default())?,
        _ => prepared.artifacts.clone(),
    };
    status.optimizer = optimizer_note(
        LiveGrouping::read(&prepared.workspace.config.state_dir()),
        prepared.project(),
        &fusion_toml,
        &observed.owned,
    );
    let serve = match ServeAddress::find(&prepared.workspace.config.state_dir()) {
        Found::Running(record) => Some(record.url),
        Found::None | Found::Stale { .. } => None,
    };
    let urls = urls(&status, prepared.platform.as_ref(), serve.as_deref());
    match output {
        OutputFormat::Json => {
            let mut doc = serde_json::to_value(&status).expect("serialisable");
            if let Some(functions) = doc["functions"].as_array_mut() {
                for function in functions {
                    let name = function["function"].as_str().unwrap_or_default();
                    if let Some(Urls::Known(list)) = urls.get(name) {
                        function["urls"] = serde_json::json!(list);
                    }
                }
            }
            let mut text = serde_json::to_string_pretty(&doc).expect("serialisable");
            text.push('\n');
            ui::out(&text);
        }
        _ => {
            let mut text = render_text(&status, ctx.ui.color);
            text.push_str(&render_urls(&urls, ctx.ui.color));
            ui::out(&text);
        }
    }
    Ok(ExitCode::Success)
}

/// Where one live function is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Urls {
    /// Its URLs: the function's own, or its tasks' through serve.
    Known(Vec<String>),
    /// The platform reports none serve can use, and why.
    None(String),
    /// A local function: reached through serve, which is not running.
    NoServe,
}

/// The URLs of each live function of `status` (missing ones have none).
fn urls(status: &Status, platform: &dyn Platform, serve: Option<&str>) -> BTreeMap<String, Urls> {
    status
        .functions
        .iter()
        .filter(|f| f.state.is_some())
        .map(|f| {
            let urls = match (platform.url(&f.function), serve) {
                (Some(Ok(url)), _) => Urls::Known(vec![url]),
                (Some(Err(why)), _) => Urls::None(why),
                (None, Some(serve)) => Urls::Known(
                    f.tasks
                        .iter()
                        .map(|task| format!("{}/{task}", serve.trim_end_matches('/')))
                        .collect(),
                ),
                (None, None) => Urls::NoServe,
            };
            (f.function.clone(), urls)
        })
        .collect()
}

/// The URL table under the status table (nothing when no function is live).
fn render_urls(urls: &BTreeMap<String, Urls>, color: bool) -> String {
    if urls.is_empty() {
        return String::new();
    }
    let width = urls
        .keys()
        .map(|n| n.chars().count())
        .fold("FUNCTION".len(), usize::max);
    let mut out = String::from("\n");
    out.push_str(&ui::paint(
        color,
        Style::Bold,
        &format!("{:<width$}  URL", "FUNCTION"),
    ));
    out.push('\n');
    let mut no_serve = false;
    for (name, urls) in urls {
        let cell = match urls {
            Urls::Known(list) => list.join(", "),
            Urls::None(why) => format!("none: {why}"),
            Urls::NoServe => {
                no_serve = true;
                "- (through `fusionizer serve`, not running)".to_string()
            }
        };
        out.push_str(&format!("{name:<width$}  {cell}\n"));
    }
    if no_serve {
        out.push_str(
            "\nLocal functions are invoked through `fusionizer serve`: while it runs, `status` \
             shows their tasks' URLs.\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_table_names_each_function_and_says_why_one_has_none() {
        let urls = BTreeMap::from([
            (
                "shop-a".to_string(),
                Urls::Known(vec![
                    "http://127.0.0.1:9/a".into(),
                    "http://127.0.0.1:9/b".into(),
                ]),
            ),
            ("shop-c".to_string(), Urls::None("no external URL".into())),
        ]);
        assert_eq!(
            render_urls(&urls, false),
            "\nFUNCTION  URL\n\
             shop-a    http://127.0.0.1:9/a, http://127.0.0.1:9/b\n\
             shop-c    none: no external URL\n"
        );
        let local = BTreeMap::from([("shop-a".to_string(), Urls::NoServe)]);
        assert!(render_urls(&local, false).contains("while it runs, `status` shows"));
        assert_eq!(render_urls(&BTreeMap::new(), false), "");
    }
}
