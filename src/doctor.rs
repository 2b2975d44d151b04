//! `efen doctor` and `efen model inspect`: check an installation and say how to fix what is
//! missing. [`service`] checks what `efen watch` opens to the network.

mod service;

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::model::Model;
use crate::pipeline::definition::PipelineDefinition;
use crate::runtime;
use crate::store::{Store, redact_url};

/// Prints one line per check (`ok`, `FAIL`, and `warn`, `note` or `info` that fail nothing); exits
/// 1 if any failed.
pub async fn doctor(config: &Config, pipeline: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut check = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(fix) => {
            ok = false;
            println!("FAIL  {name}: {fix}");
        }
    };

    check("project root", Ok(config.root.display().to_string()));
    let library = runtime::locate(&config.runtime_settings()).map_err(|e| e.to_string());
    let loaded = library.and_then(|_| runtime::environment(&config.runtime_settings()).map_err(|e| e.to_string()));
    check(
        "onnxruntime",
        loaded
            .as_ref()
            .map(|(_, lib)| {
                format!("{} (version {}, found by {})", lib.path.display(), runtime::version(lib), lib.found_by)
            })
            .map_err(Clone::clone),
    );

    check("threads", Ok(runtime::thread_settings(&config.runtime_settings())));

    let pipeline_path =
        pipeline.map(Path::to_path_buf).unwrap_or_else(|| config.resolve(&config.paths.default_pipeline));
    let definition = PipelineDefinition::load(&pipeline_path).map_err(|e| e.to_string());
    let model = definition.clone().and_then(|d| {
        Model::load(&d.model).map_err(|e| {
            format!("{e} (scripts/setup.sh restores the bundled model card; check the pipeline's model path)")
        })
    });
    check(
        "pipeline",
        model
            .as_ref()
            .map(|m| format!("{} → {} (sha256 {})", pipeline_path.display(), m.path.display(), &m.sha256[..12]))
            .map_err(Clone::clone),
    );

    if let (Ok(definition), Ok(model)) = (&definition, &model) {
        let card = model.card.at_size(definition.preprocess.input_size);
        for notice in card.notices() {
            println!("note  {notice}");
        }
    }

    if let (Ok(_), Ok(model)) = (&loaded, &model) {
        let probes = runtime::probe_providers(&config.runtime_settings(), model).map_err(|e| e.to_string());
        match probes {
            Ok(probes) => {
                for (name, result) in probes {
                    let wanted = config.runtime.providers.contains(&name);
                    let label = format!("provider {name}{}", if wanted { "" } else { " (not in runtime.providers)" });
                    match result {
                        Ok(()) => check(&label, Ok("loads".into())),
                        Err(reason) if wanted && name == "cpu" => check(&label, Err(reason)),
                        Err(reason) if wanted => check(
                            &label,
                            Err(format!("{reason} (the next provider in runtime.providers will be used)")),
                        ),
                        Err(reason) => {
                            println!("info  {label}: unavailable: {}", first_line(&reason))
                        }
                    }
                }
            }
            Err(e) => check("providers", Err(e)),
        }
    }

    let url = config.database_url();
    let store = match Store::open(&url, 1).await {
        Ok(store) => store.ping().await.map(|_| store).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    check(
        "store",
        store.map(|s| format!("{} ({:?}, migrated)", redact_url(&url), s.backend)).map_err(|e| e.to_string()),
    );

    for (name, dir) in [("state folder", config.state_dir()), ("output folder", config.out_dir())] {
        check(
            name,
            writable(&dir)
                .map(|_| dir.display().to_string())
                .map_err(|e| format!("{}: {e} (create it or set paths.* in the config)", dir.display())),
        );
    }

    for (name, verdict) in service::checks(config).await {
        match verdict {
            service::Verdict::Ok(detail) => check(name, Ok(detail)),
            service::Verdict::Fail(fix) => check(name, Err(fix)),
            service::Verdict::Warn(warning) => println!("warn  {name}: {warning}"),
            service::Verdict::Info(detail) => println!("info  {name}: {detail}"),
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".efen-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(probe)
}

/// Prints the card, the checksum and the graph's inputs and outputs.
pub fn inspect_model(config: &Config, path: &Path) -> anyhow::Result<ExitCode> {
    let model = Model::load(path)?;
    println!("model:   {}", model.path.display());
    println!("sha256:  {} (matches the card)", model.sha256);
    println!("size:    {} bytes", model.bytes.len());
    let (session, provider, _) = runtime::session(&config.runtime_settings(), &model)?;
    let (_, library) = runtime::environment(&config.runtime_settings())?;
    println!("runtime: ONNX Runtime {} on {provider}", runtime::version(library));
    for input in session.inputs() {
        println!("input:   {} {:?}", input.name(), input.dtype());
    }
    for output in session.outputs() {
        println!("output:  {} {:?}", output.name(), output.dtype());
    }
    if let Ok(metadata) = session.metadata()
        && let Ok(keys) = metadata.custom_keys()
    {
        println!("metadata keys: {}", keys.join(", "));
    }
    println!("card:\n{}", serde_json::to_string_pretty(&model.card)?);
    Ok(ExitCode::SUCCESS)
}
