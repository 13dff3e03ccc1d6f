//! `lamina image pull|ls|rm|prune`.
#![allow(clippy::print_stdout)] // this module is the `lamina image` command-line output

use std::ffi::OsString;

use clap::Parser;

use super::output::{ProgressReporter, human_age, human_size, short_digest};
use super::{Cli, Command, ImageCommand};
use crate::exit;
use crate::image::pull::PullContext;
use crate::image::{Cache, Freshness, ImageError, ImageRef, Mirrors, Settings, ensure};
use crate::{paths, runtimes};

pub fn run(argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> u8 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(exit::USAGE);
        }
    };
    let Command::Image(command) = cli.command else {
        return super::invoke::fail("expected `lamina image ...`");
    };
    // Ctrl-C, SIGTERM and SIGHUP stop a pull and remove what it had fetched.
    crate::signals::install();
    match execute(command, env) {
        Ok(()) => exit::SUCCESS,
        Err(ImageError::Interrupted) => {
            eprintln!("{}", ImageError::Interrupted);
            crate::signals::stopped_exit_code()
        }
        Err(err) => super::invoke::fail(&err.to_string()),
    }
}

/// A reference, or a runtime name standing for its base image.
fn image_ref(text: &str) -> Result<ImageRef, ImageError> {
    match runtimes::find(text) {
        Some(runtime) => ImageRef::parse(&runtime.image),
        None => ImageRef::parse(text),
    }
}

/// Gets an image into the cache with the user's mirrors, refresh interval and progress bars.
fn fetch(
    cache: &Cache,
    env: &dyn Fn(&str) -> Option<String>,
    reference: &str,
    arch: runtimes::Architecture,
    freshness: Freshness,
) -> Result<crate::image::CachedImage, ImageError> {
    let image = image_ref(reference)?;
    let settings = Settings::load(env)?;
    let mirrors = Mirrors::load(env, &settings)?;
    let reporter = ProgressReporter::new();
    let ctx = PullContext {
        cache,
        mirrors: &mirrors,
        refresh: PullContext::refresh_interval(env, &settings),
        env,
        reporter: &reporter,
    };
    ensure(&ctx, &image, arch, freshness)
}

fn execute(command: ImageCommand, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ImageError> {
    let cache = Cache::open(&paths::cache_root(env))?;
    match command {
        ImageCommand::Pull { reference, arch } => {
            let pulled = fetch(
                &cache,
                env,
                &reference,
                arch,
                Freshness::CheckNow { strict: true },
            )?;
            println!(
                "{} {} {} {}",
                pulled.reference,
                pulled.meta.platform,
                pulled.meta.manifest_digest,
                human_size(pulled.meta.size)
            );
        }
        ImageCommand::Inspect {
            reference,
            arch,
            skip_pull_image,
        } => {
            let freshness = if skip_pull_image {
                Freshness::Offline
            } else {
                Freshness::Default
            };
            let found = fetch(&cache, env, &reference, arch, freshness)?;
            let report = serde_json::json!({
                "reference": found.reference,
                "rootfs": found.rootfs,
                "meta": found.meta,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("serialisable")
            );
        }
        ImageCommand::Ls { json } => {
            repair_damaged(&cache, env)?;
            let rows = cache.list();
            if json {
                for row in rows {
                    println!("{}", serde_json::to_string(&row).expect("serialisable"));
                }
            } else {
                println!(
                    "{:<50} {:<12} {:<14} {:>10}  LAST USED",
                    "REFERENCE", "PLATFORM", "DIGEST", "SIZE"
                );
                for row in rows {
                    let last_used = match &row.damaged {
                        Some(reason) => format!("damaged ({reason}): pulled again on next use"),
                        None => human_age(crate::image::cache::now().saturating_sub(row.last_used)),
                    };
                    println!(
                        "{:<50} {:<12} {:<14} {:>10}  {last_used}",
                        row.reference,
                        row.platform,
                        short_digest(&row.manifest_digest),
                        human_size(row.size),
                    );
                }
            }
        }
        ImageCommand::Rm { reference } => {
            let image = image_ref(&reference)?;
            let canonical = image.canonical();
            let removed = cache.remove_refs(&|row| row.reference == canonical)?;
            if removed.is_empty() {
                return Err(ImageError::Cache {
                    path: cache.root().to_path_buf(),
                    message: format!("`{canonical}` is not in the cache (see `lamina image ls`)"),
                });
            }
            for row in removed {
                println!("removed {} {}", row.reference, row.platform);
            }
        }
        ImageCommand::Prune {
            older_than,
            max_size,
        } => {
            let now = crate::image::cache::now();
            let mut rows = cache.list();
            let mut doomed: Vec<(String, String)> = Vec::new();
            if let Some(days) = older_than {
                let limit = (days * 86400.0) as u64;
                doomed.extend(
                    rows.iter()
                        .filter(|r| now.saturating_sub(r.last_used) > limit)
                        .map(|r| (r.reference.clone(), r.platform.clone())),
                );
            }
            if let Some(budget) = max_size {
                rows.retain(|r| !doomed.contains(&(r.reference.clone(), r.platform.clone())));
                rows.sort_by_key(|r| r.last_used);
                // Images shared by several references count once.
                let mut total: u64 = unique_size(&rows);
                for row in &rows {
                    if total <= budget {
                        break;
                    }
                    doomed.push((row.reference.clone(), row.platform.clone()));
                    let remaining: Vec<_> = rows
                        .iter()
                        .filter(|r| !doomed.contains(&(r.reference.clone(), r.platform.clone())))
                        .cloned()
                        .collect();
                    total = unique_size(&remaining);
                }
            }
            let removed = cache.remove_refs(&|row| {
                doomed.contains(&(row.reference.clone(), row.platform.clone()))
            })?;
            for row in &removed {
                println!("removed {} {}", row.reference, row.platform);
            }
            eprintln!("{} image(s) removed", removed.len());
        }
    }
    Ok(())
}

/// Unpacks again, from the blob cache, every image whose entry is damaged or missing, so that `ls`
/// shows the cache as an invoke will find it; what cannot be repaired offline is listed as damaged.
fn repair_damaged(cache: &Cache, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ImageError> {
    let limits = crate::image::limits::Limits::from_env(env)?;
    let reporter = ProgressReporter::new();
    for entry in cache.refs() {
        if !matches!(
            cache.lookup(&entry.reference, &entry.manifest_digest),
            crate::image::cache::Lookup::Ready(_)
        ) {
            // An image that cannot be unpacked again is listed as damaged, not an error of `ls`.
            if let Err(err) = crate::image::repair::repair(cache, &entry, &limits, &reporter) {
                crate::image::Reporter::message(&reporter, &err.to_string());
            }
        }
    }
    Ok(())
}

fn unique_size(rows: &[crate::image::cache::Listed]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .filter(|r| seen.insert(r.manifest_digest.clone()))
        .map(|r| r.size)
        .sum()
}
