//! `bosun hook test`: one sync of a parent (or decorated target) as the engine would make it —
//! the request built from the cluster's objects, the hook called for real (the controller's
//! URL, or `--url` for a hook running on a laptop), the response validated — with every write
//! sent to the API server as a dry run, and printed as what would happen: children created,
//! updated (a diff) or deleted, the status change, events, when the next sync comes. Nothing
//! is written. `--save` keeps the exchange as a protocol test vector.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bosun_engine::dry_run::{self, DryRun, DryRunRequest, Outcome, Write, WriteAction};
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// `bosun hook` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HookCommand {
    /// Runs one sync of a parent as the engine would — the hook called for real, every write
    /// sent to the API server as a dry run — and prints what it would do. Writes nothing.
    ///
    /// E.g. `bosun hook test greeting-controller greetings/hello`, or with the hook running on
    /// this machine, `bosun hook test controller.yaml greeting.yaml --url http://127.0.0.1:8080/sync`.
    /// Exits with 0 when the sync would succeed, 2 when the engine would fail it (the message
    /// is its SyncError event's), 1 when the dry run cannot be made.
    Test(HookTestArgs),
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// What would happen, with a unified diff per changed object.
    Text,
    /// One JSON document: the hook exchanges, the writes with the objects before and after,
    /// the outcome.
    Json,
}

/// `bosun hook test` arguments.
#[derive(Debug, clap::Args)]
pub struct HookTestArgs {
    /// The controller: the name of a CompositeController or DecoratorController in the cluster
    /// (`greeting-controller`, or `compositecontroller/greeting-controller` when both kinds have
    /// one of that name), `admissioncontroller/<name>`, or a manifest file holding one. With an
    /// AdmissionController, the object goes through its mutate and validate hooks as the API
    /// server would send it (a create from a file, an update of an object in the cluster), and
    /// the verdicts and the patch are printed (exit 2 when denied).
    #[arg(value_name = "CONTROLLER")]
    controller: String,
    /// The parent (or target): `<resource>/<name>` in the cluster (`greetings/hello`), or a
    /// JSON or YAML file — an existing object's new content (the dry run shows what applying
    /// it would lead to), or a new object.
    #[arg(value_name = "OBJECT")]
    object: String,
    /// The object's namespace; the file's, else the kubeconfig context's, when unset.
    #[arg(short, long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Sends the sync (or finalize) hook call here instead of to the controller's URL, e.g.
    /// `http://127.0.0.1:8080/sync` for a hook running on this machine. When it names another
    /// host than the hook's own, the controller's credentials (authorization, basicAuth,
    /// clientTLS, and endpointConfigs for that host) are not sent, unless --send-credentials.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Sends the controller's credentials with the calls to --url even when it names another
    /// host than the hook's own.
    #[arg(long, requires = "url")]
    send_credentials: bool,
    /// How the result is printed.
    #[arg(long, short, value_enum, default_value = "text")]
    output: OutputFormat,
    /// Saves the exchange in DIR as a protocol test vector (protocol/README.md): the sync or
    /// finalize call's `request.json` and `response.json`, a customize call's
    /// `customize-request.json` and `customize.json`, and `expect.json`, what the engine did.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// How the engine would write children: dynamic-apply (a three-way merge with the
    /// last-applied annotation) or server-side-apply, as `bosun run --apply-strategy`.
    #[arg(long, default_value = "dynamic-apply", value_name = "STRATEGY")]
    apply_strategy: bosun_engine::ApplyStrategy,
    /// Allows sending hooks credentials over plain http:// (as `bosun run`'s flag).
    #[arg(long)]
    allow_insecure_hook_credentials: bool,
    /// Shows the annotations the engine keeps on children for itself (the
    /// `metacontroller.k8s.io/last-applied-configuration` of dynamic apply) in the diffs; they
    /// are hidden by default, since each repeats the whole desired child on one line.
    #[arg(long)]
    show_bookkeeping: bool,
    #[command(flatten)]
    cluster: crate::run::ClusterArgs,
}

/// Runs a `bosun hook` subcommand.
pub fn run(command: HookCommand) -> anyhow::Result<()> {
    let HookCommand::Test(args) = command;
    tokio::runtime::Runtime::new()?.block_on(async {
        let config = args.cluster.config().await?;
        let client = kube::Client::try_from(config.clone())?;
        let controller = controller(&client, &args.controller).await?;
        let object = object(&client, &args.object, args.namespace.as_deref()).await?;
        if controller.types.as_ref().is_some_and(|types| types.kind == "AdmissionController") {
            // An object in the cluster is tried as an update of itself; one from a file as a create.
            let old = (!is_file(&args.object)).then(|| object.clone());
            let verdicts = bosun_engine::admission::trial(client, &controller, &object, old.as_ref()).await.map_err(anyhow::Error::msg)?;
            print!("{}", admission_text(&controller, &object, old.is_some(), &verdicts));
            if verdicts.iter().any(|verdict| !verdict.allowed) {
                std::process::exit(2);
            }
            return Ok(());
        }
        let engine = bosun_engine::EngineConfig {
            apply_strategy: args.apply_strategy.clone(),
            allow_insecure_hook_credentials: args.allow_insecure_hook_credentials,
            // Run where the person testing is, as them: their programs may run.
            exec_hooks: true,
            ..Default::default()
        };
        let request =
            DryRunRequest { controller: controller.clone(), object, url: args.url.clone(), send_credentials: args.send_credentials };
        let result = dry_run::dry_run(config, engine, request).await?;
        if let Some(dir) = &args.save {
            save(dir, &result)?;
        }
        match args.output {
            OutputFormat::Text => print!("{}", text(&controller, &result, args.show_bookkeeping)),
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&to_json(&controller, &result))?),
        }
        if let Outcome::Failed(_) = result.outcome {
            std::process::exit(2);
        }
        Ok(())
    })
}

/// What an AdmissionController's hooks said of `object`, as people read it.
fn admission_text(
    controller: &DynamicObject,
    object: &DynamicObject,
    update: bool,
    verdicts: &[bosun_engine::admission::Verdict],
) -> String {
    let object = serde_json::to_value(object).expect("objects serialize");
    let operation = if update { "UPDATE" } else { "CREATE" };
    let mut out = format!(
        "bosun hook test: AdmissionController {} admitting {} ({operation}); nothing was written.\n\n",
        controller.name_any(),
        describe(&object)
    );
    if verdicts.is_empty() {
        out.push_str("No hook was called: the controller has no validate or mutate hook.\n");
    }
    for verdict in verdicts {
        let said = if verdict.allowed { "allowed".to_owned() } else { format!("denied: {}", verdict.message.as_deref().unwrap_or("")) };
        out.push_str(&format!("{} hook {}: {said}\n", verdict.hook, verdict.url));
        for warning in &verdict.warnings {
            out.push_str(&format!("  warning: {warning}\n"));
        }
        if let Some(patch) = &verdict.patch {
            out.push_str(&format!("  patch: {patch}\n"));
        }
    }
    out
}

/// Whether `argument` names a file rather than an object in the cluster.
fn is_file(argument: &str) -> bool {
    Path::new(argument).is_file() || [".yaml", ".yml", ".json"].iter().any(|extension| argument.ends_with(extension))
}

/// The one object in the YAML or JSON file at `path`.
fn read_object(path: &str) -> anyhow::Result<DynamicObject> {
    let mut objects = crate::manifests::objects(Path::new(path))?;
    if objects.len() != 1 {
        bail!("{path} holds {} objects; give a file with just the one", objects.len());
    }
    serde_json::from_value(objects.remove(0))
        .with_context(|| format!("{path} is not a Kubernetes object (apiVersion, kind, metadata.name)"))
}

/// The controller, from a file or the cluster.
async fn controller(client: &kube::Client, argument: &str) -> anyhow::Result<DynamicObject> {
    if is_file(argument) {
        return read_object(argument);
    }
    let (kinds, name): (&[&str], &str) = match argument.split_once('/') {
        Some((kind, name)) if ["compositecontroller", "compositecontrollers", "cc"].contains(&kind.to_ascii_lowercase().as_str()) => {
            (&["CompositeController"], name)
        }
        Some((kind, name)) if ["decoratorcontroller", "decoratorcontrollers", "dec"].contains(&kind.to_ascii_lowercase().as_str()) => {
            (&["DecoratorController"], name)
        }
        Some((kind, name)) if ["admissioncontroller", "admissioncontrollers", "adc"].contains(&kind.to_ascii_lowercase().as_str()) => {
            (&["AdmissionController"], name)
        }
        Some(_) => {
            bail!(
                "{argument:?} is not a controller: give its name, compositecontroller/<name>, decoratorcontroller/<name>, \
                 admissioncontroller/<name> or a file"
            )
        }
        None => (&["CompositeController", "DecoratorController"], argument),
    };
    let mut found = Vec::new();
    for kind in kinds {
        let resource = match *kind {
            "CompositeController" => ApiResource::erase::<bosun_engine::api::CompositeController>(&()),
            "DecoratorController" => ApiResource::erase::<bosun_engine::api::DecoratorController>(&()),
            _ => ApiResource::erase::<bosun_engine::admission::api::AdmissionController>(&()),
        };
        if let Some(object) = Api::<DynamicObject>::all_with(client.clone(), &resource).get_opt(name).await? {
            found.push(object);
        }
    }
    match found.len() {
        0 => bail!("no {} named {name} in the cluster", kinds.join(" or ")),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "both a CompositeController and a DecoratorController are named {name}: say compositecontroller/{name} or decoratorcontroller/{name}"
        ),
    }
}

/// The object, from a file or the cluster.
async fn object(client: &kube::Client, argument: &str, namespace: Option<&str>) -> anyhow::Result<DynamicObject> {
    if is_file(argument) {
        let mut object = read_object(argument)?;
        if let Some(namespace) = namespace {
            object.metadata.namespace = Some(namespace.to_owned());
        }
        return Ok(object);
    }
    let namespace = namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
    let (_, _, object) = crate::tree::find(client, argument, &namespace).await?;
    Ok(object)
}

/// `Kind namespace/name` of an object.
fn describe(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("object");
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// What a write is about, for people: `ConfigMap default/hello-greeting`.
fn subject(write: &Write) -> String {
    write.object().map(describe).unwrap_or_else(|| write.path.clone())
}

/// The YAML of `value`.
fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// A unified diff from `before` to `after`, indented.
fn diff(before: &str, after: &str, what: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after);
    let text = diff.unified_diff().context_radius(3).header(&format!("{what} (now)"), &format!("{what} (after the sync)")).to_string();
    text.lines().map(|line| format!("    {line}\n")).collect()
}

/// The annotations the engine keeps on children for itself.
const BOOKKEEPING: [&str; 1] = ["metacontroller.k8s.io/last-applied-configuration"];

/// `object` as a diff shows it: without server-owned metadata, and without the engine's
/// bookkeeping annotations unless `bookkeeping`.
fn shown(object: &Value, bookkeeping: bool) -> Value {
    let mut object = dry_run::comparable(object);
    if !bookkeeping && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            BOOKKEEPING.iter().for_each(|key| drop(annotations.remove(*key)));
        }
        if metadata.get("annotations").and_then(Value::as_object).is_some_and(|annotations| annotations.is_empty()) {
            metadata.remove("annotations");
        }
    }
    object
}

/// The result as people read it; `bookkeeping`: with the engine's bookkeeping annotations.
fn text(controller: &DynamicObject, result: &DryRun, bookkeeping: bool) -> String {
    let kind = controller.types.as_ref().map(|types| types.kind.as_str()).unwrap_or("controller");
    let object = serde_json::to_value(&result.object).expect("objects serialize");
    let mut out = format!(
        "bosun hook test: {kind} {} syncing {}{}; nothing was written (every write went to the API server as a dry run).\n\n",
        controller.name_any(),
        describe(&object),
        if result.new { " (new: not in the cluster)" } else { "" },
    );
    if result.exchanges.is_empty() {
        out.push_str("No hook was called: the controller does not select this object, or has no hook for its state.\n");
    }
    for exchange in &result.exchanges {
        let answer = match exchange.status {
            None => "no answer".to_owned(),
            Some(_) if exchange.url.starts_with("exec:") || exchange.url.starts_with("wasm:") => "exited 0, answered".to_owned(),
            Some(status) => format!("HTTP {status}"),
        };
        out.push_str(&format!("{} hook {}: {answer} in {} ms\n", exchange.hook, exchange.url, exchange.duration.as_millis()));
        let sent = if exchange.credentials.is_empty() { "none".to_owned() } else { exchange.credentials.join(", ") };
        out.push_str(&format!("  credentials sent: {sent}\n"));
    }
    if !result.withheld_credentials.is_empty() {
        out.push_str(&format!(
            "Not sent, because --url names another host than the hook's (pass --send-credentials to send them): {}\n",
            result.withheld_credentials.join(", ")
        ));
    }
    out.push('\n');
    let (events, writes): (Vec<&Write>, Vec<&Write>) = result.writes.iter().partition(|write| write.is_event());
    if writes.is_empty() && !matches!(result.outcome, Outcome::Failed(_)) {
        out.push_str("No changes: the cluster already is what the hook asks for.\n");
    }
    for write in writes {
        let what = subject(write);
        if let Some(refused) = &write.refused {
            out.push_str(&format!("{what}: the API server would refuse to {} it: {refused}\n", write.action.verb()));
            continue;
        }
        match (write.action, write.subresource.as_deref()) {
            (WriteAction::Create, _) => {
                out.push_str(&format!("{what}: would be created\n"));
                let after = write.after.as_ref().map(|after| shown(after, bookkeeping)).unwrap_or_default();
                out.push_str(&diff("", &yaml(&after), &what));
            }
            (WriteAction::Delete, _) => out.push_str(&format!("{what}: would be deleted\n")),
            (WriteAction::Update, Some("status")) => {
                out.push_str(&format!("{what}: its status would be written\n"));
                let status = |object: &Option<Value>| match object.as_ref().map(|object| &object["status"]) {
                    Some(status) if !status.is_null() => yaml(&json!({ "status": status })),
                    _ => String::new(),
                };
                out.push_str(&diff(&status(&write.before), &status(&write.after), &what));
            }
            (WriteAction::Update, _) => {
                out.push_str(&format!("{what}: would be updated\n"));
                let comparable = |object: &Option<Value>| object.as_ref().map(|object| shown(object, bookkeeping)).unwrap_or_default();
                out.push_str(&diff(&yaml(&comparable(&write.before)), &yaml(&comparable(&write.after)), &what));
            }
        }
    }
    for event in events {
        let body = event.request.clone().unwrap_or_default();
        let note = body["note"].as_str().or(body["message"].as_str()).unwrap_or_default();
        out.push_str(&format!(
            "Event {} {}: {note}\n",
            body["type"].as_str().unwrap_or("Normal"),
            body["reason"].as_str().unwrap_or_default()
        ));
    }
    out.push('\n');
    out.push_str(&match &result.outcome {
        Outcome::Done => "Synced; the next sync comes with the next change or resync.\n".to_owned(),
        Outcome::RequeueAfter(delay) => format!("Synced; it would be synced again after {delay:?}.\n"),
        Outcome::Failed(message) => format!("The sync fails: {message}\n"),
    });
    out
}

/// The result as one JSON document.
fn to_json(controller: &DynamicObject, result: &DryRun) -> Value {
    let outcome = match &result.outcome {
        Outcome::Done => json!({ "result": "Synced" }),
        Outcome::RequeueAfter(delay) => json!({ "result": "Synced", "requeueAfterSeconds": delay.as_secs_f64() }),
        Outcome::Failed(message) => json!({ "result": "Failed", "message": message }),
    };
    json!({
        "controller": { "kind": controller.types.as_ref().map(|types| types.kind.clone()), "name": controller.name_any() },
        "object": result.object,
        "written": false,
        "hooks": result.exchanges.iter().map(|exchange| json!({
            "hook": exchange.hook,
            "url": exchange.url,
            "status": exchange.status,
            "durationSeconds": exchange.duration.as_secs_f64(),
            "credentialsSent": exchange.credentials,
            "request": exchange.request,
            "response": exchange.response,
        })).collect::<Vec<_>>(),
        "credentialsWithheld": result.withheld_credentials,
        "writes": result.writes.iter().map(|write| json!({
            "action": write.action.verb(),
            "path": write.path,
            "subresource": write.subresource,
            "object": subject(write),
            "before": write.before,
            "after": write.after,
            "refused": write.refused,
        })).collect::<Vec<_>>(),
        "outcome": outcome,
    })
}

/// Saves the exchange under `dir` as a protocol test vector (see `protocol/README.md`): the
/// sync or finalize call's `request.json` and `response.json`, the customize call's
/// `customize-request.json` and `customize.json`, and `expect.json`.
fn save(dir: &Path, result: &DryRun) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, value: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(value).expect("JSON serializes")))
            .with_context(|| format!("writing {}", path.display()))
    };
    let customize = result.exchanges.iter().find(|exchange| exchange.hook == "customize");
    for (exchange, request, response) in
        [(result.main_exchange(), "request.json", "response.json"), (customize, "customize-request.json", "customize.json")]
    {
        if let Some(exchange) = exchange {
            write(request, &exchange.request)?;
            write(response, exchange.response.as_ref().unwrap_or(&Value::Null))?;
        }
    }
    write("expect.json", &result.expectation())
}
