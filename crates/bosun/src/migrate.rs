//! `bosun migrate`: a read-only report for moving a cluster from Metacontroller to bosun —
//! where Metacontroller runs and which of its flags bosun would not take, each controller with
//! the RBAC it needs under bosun and what bosun would do differently with it, and the steps,
//! in order, with the commands to run. It changes nothing.

use std::collections::HashMap;
use std::fmt::Write;

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersion;
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::rbac::Needs;

/// Settings of `bosun migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only controllers whose labels match, as for `bosun run --target-label-selector`.
    #[arg(long, default_value = "", value_parser = crate::run::label_selector, value_name = "SELECTOR")]
    target_label_selector: String,
    #[command(flatten)]
    cluster: crate::run::ClusterArgs,
}

/// A Deployment or StatefulSet running a Metacontroller image.
struct Workload {
    kind: &'static str,
    namespace: String,
    name: String,
    container: String,
    image: String,
    args: Vec<String>,
    replicas: i32,
}

/// The Deployments and StatefulSets in the cluster whose containers run a Metacontroller image.
async fn metacontrollers(client: &Client) -> anyhow::Result<Vec<Workload>> {
    let mut found = Vec::new();
    let mut collect = |kind: &'static str, object: &kube::api::ObjectMeta, pod: Option<&PodSpec>, replicas: Option<i32>| {
        for container in pod.map(|pod| pod.containers.as_slice()).unwrap_or_default() {
            let image = container.image.clone().unwrap_or_default();
            let repository = image.rsplit('/').next().unwrap_or_default();
            if repository.starts_with("metacontroller:") || repository == "metacontroller" {
                found.push(Workload {
                    kind,
                    namespace: object.namespace.clone().unwrap_or_default(),
                    name: object.name.clone().unwrap_or_default(),
                    container: container.name.clone(),
                    image,
                    args: container.command.iter().flatten().skip(1).chain(container.args.iter().flatten()).cloned().collect(),
                    replicas: replicas.unwrap_or(1),
                });
            }
        }
    };
    for set in Api::<StatefulSet>::all(client.clone()).list(&ListParams::default()).await.context("listing StatefulSets")? {
        collect("StatefulSet", &set.metadata, set.spec.template.spec.as_ref(), set.spec.replicas);
    }
    for deployment in Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await.context("listing Deployments")? {
        collect("Deployment", &deployment.metadata, deployment.spec.template.spec.as_ref(), deployment.spec.replicas);
    }
    Ok(found)
}

/// What bosun would make of a Metacontroller container's arguments: one line per flag it
/// ignores or refuses.
fn flag_findings(args: &[String]) -> Vec<String> {
    let argv: Vec<String> = std::iter::once("metacontroller".to_owned()).chain(args.iter().cloned()).collect();
    let (translated, notes) = match crate::invocation::translate(argv) {
        Ok(translated) => translated,
        Err(error) => return vec![format!("refused: {error}")],
    };
    let mut findings: Vec<String> =
        notes.ignored.iter().map(|flag| format!("{flag}: no counterpart in bosun; ignored with a warning")).collect();
    if let Err(error) = <crate::Cli as clap::Parser>::try_parse_from(translated) {
        let message = error.to_string();
        findings.push(format!("refused: {}", message.lines().next().unwrap_or_default().trim_start_matches("error: ")));
    }
    findings
}

/// The most objects of a parent type read to count them.
const LIST_PAGE: u32 = 500;

/// A resolved resource type: its API resource and whether it is namespaced.
type Resolved = Option<(ApiResource, bool)>;

/// Resolves resource types by discovery, one request per group version.
struct Types<'a> {
    client: &'a Client,
    groups: HashMap<String, Vec<(ApiResource, bool)>>,
}

impl Types<'_> {
    async fn resolve(&mut self, api_version: &str, resource: &str) -> Resolved {
        if !self.groups.contains_key(api_version) {
            let resources = match api_version.parse::<GroupVersion>() {
                Ok(version) => match kube::discovery::pinned_group(self.client, &version).await {
                    Ok(group) => group
                        .versioned_resources(&version.version)
                        .into_iter()
                        .map(|(resource, capabilities)| (resource, capabilities.scope == Scope::Namespaced))
                        .collect(),
                    Err(_) => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            self.groups.insert(api_version.to_owned(), resources);
        }
        self.groups[api_version].iter().find(|(found, _)| found.plural == resource).cloned()
    }
}

/// One controller's part of the report.
struct Controller {
    needs: Needs,
    /// (apiVersion, resource) of its parents or targets.
    owners: Vec<(String, String)>,
    /// (apiVersion, resource) of its children or attachments.
    owned: Vec<(String, String)>,
    spec: Value,
}

/// Where each hook of `spec` is called, as (hook, URL).
fn hook_urls(spec: &Value) -> Vec<(String, String)> {
    let mut urls = Vec::new();
    for (hook, value) in spec["hooks"].as_object().into_iter().flatten() {
        let webhook = &value["webhook"];
        let url = match (&webhook["url"], &webhook["service"]) {
            (Value::String(url), _) => url.clone(),
            (_, Value::Object(service)) => format!(
                "{}://{}.{}:{}{}",
                service.get("protocol").and_then(Value::as_str).unwrap_or("http"),
                service.get("name").and_then(Value::as_str).unwrap_or_default(),
                service.get("namespace").and_then(Value::as_str).unwrap_or_default(),
                service.get("port").and_then(Value::as_i64).unwrap_or(80),
                webhook["path"].as_str().unwrap_or_default(),
            ),
            _ => continue,
        };
        urls.push((hook.clone(), url));
    }
    urls.sort();
    urls
}

/// Whether a hook at `url` of this webhook is sent credentials: in the URL's user
/// information, its own settings', or an `endpointConfigs` entry's for its host.
fn sends_credentials(spec: &Value, hook: &str, url: &str) -> bool {
    let credentials = |settings: &Value| ["authorization", "basicAuth", "clientTLS"].iter().any(|key| settings[*key].is_object());
    let authority = url.split("://").nth(1).and_then(|rest| rest.split(['/', '?', '#']).next()).unwrap_or_default();
    let (user_information, host) = authority.rsplit_once('@').map_or((None, authority), |(user, host)| (Some(user), host));
    let host = host.to_ascii_lowercase();
    user_information.is_some()
        || credentials(&spec["hooks"][hook]["webhook"])
        || spec["endpointConfigs"].as_array().into_iter().flatten().any(|config| {
            let configured = config["host"].as_str().unwrap_or_default().to_ascii_lowercase();
            (configured == host || host.split(':').next() == Some(configured.as_str())) && credentials(config)
        })
}

impl Controller {
    async fn report(&self, client: &Client, types: &mut Types<'_>, out: &mut String) -> anyhow::Result<()> {
        let Needs { kind, name, .. } = &self.needs;
        writeln!(out, "\n{kind} {name}")?;
        let mut findings = Vec::new();
        let mut owner_namespaced = false;
        let mut verify = None;
        for (api_version, resource) in &self.owners {
            match types.resolve(api_version, resource).await {
                Some((api, namespaced)) => {
                    owner_namespaced |= namespaced;
                    // A count, up to a page: enough to tell none from some from many.
                    let page = ListParams::default().limit(LIST_PAGE);
                    let objects = Api::<DynamicObject>::all_with(client.clone(), &api).list(&page).await?;
                    let more = objects.metadata.continue_.as_ref().is_some_and(|token| !token.is_empty());
                    let count = if more { format!("{LIST_PAGE} or more") } else { objects.items.len().to_string() };
                    let scope = if namespaced { "namespaced" } else { "cluster-scoped" };
                    writeln!(out, "  {:<12} {resource} ({api_version}), {scope}, {count} object(s)", self.owner_label())?;
                    if let Some(first) = objects.items.first() {
                        let target = if api.group.is_empty() { resource.clone() } else { format!("{resource}.{}", api.group) };
                        let namespace = first.namespace().map(|namespace| format!(" -n {namespace}")).unwrap_or_default();
                        verify.get_or_insert(format!("bosun tree {target}/{}{namespace}", first.name_any()));
                    }
                }
                None => {
                    writeln!(out, "  {:<12} {resource} ({api_version}), not served", self.owner_label())?;
                    findings
                        .push(format!("{resource} ({api_version}) is not served: install its CRD before bosun can run this controller"));
                }
            }
        }
        let mut owned = Vec::new();
        for (api_version, resource) in &self.owned {
            match types.resolve(api_version, resource).await {
                Some((_, namespaced)) => {
                    owned.push(format!("{resource} ({api_version}{})", if namespaced { "" } else { ", cluster-scoped" }));
                    if owner_namespaced && !namespaced {
                        findings.push(format!(
                            "{resource} ({api_version}) is cluster-scoped while the {} is namespaced: bosun refuses such {} (no owner reference \
                             can tie them; Metacontroller creates them and never updates or deletes them) — make the {} cluster-scoped",
                            self.owner_label(),
                            self.owned_label(),
                            self.owner_label(),
                        ));
                    }
                }
                None => {
                    owned.push(format!("{resource} ({api_version}, not served)"));
                    findings.push(format!("{resource} ({api_version}) is not served: install its CRD"));
                }
            }
        }
        writeln!(out, "  {:<12} {}", self.owned_label(), if owned.is_empty() { "none".to_owned() } else { owned.join(", ") })?;
        for (hook, url) in hook_urls(&self.spec) {
            // Hook URLs may hold credentials (user information, query, fragment): printed redacted.
            let printed = bosun_runtime::redact::url_text(&url);
            writeln!(out, "  {:<12} {hook}: {printed}", "hook")?;
            if url.starts_with("http://") && sends_credentials(&self.spec, &hook, &url) {
                findings.push(format!(
                    "the {hook} hook is sent credentials over plain http ({printed}): bosun refuses to, unless run with \
                     --allow-insecure-hook-credentials — serve the hook over https (caBundle), or pass the flag"
                ));
            }
        }
        if self.needs.customize {
            findings.push(
                "it has a customize hook: pass the types its related rules select to `bosun rbac --related <apiVersion>/<resource>`".into(),
            );
        }
        writeln!(out, "  {:<12} {}", "rbac", self.needs.summary())?;
        for finding in &findings {
            writeln!(out, "  {:<12} {finding}", "! differs")?;
        }
        if let Some(verify) = verify {
            writeln!(out, "  {:<12} {verify}", "verify")?;
        }
        Ok(())
    }

    fn owner_label(&self) -> &'static str {
        if self.needs.kind == "CompositeController" { "parent" } else { "target" }
    }

    fn owned_label(&self) -> &'static str {
        if self.needs.kind == "CompositeController" { "children" } else { "attachments" }
    }
}

/// The report for the cluster of `args`.
async fn report(args: &MigrateArgs) -> anyhow::Result<String> {
    let client = args.cluster.client(&bosun_runtime::Metrics::new()).await?;
    let mut out =
        String::from("bosun migrate: a read-only report on moving this cluster from Metacontroller to bosun; nothing was changed.\n");

    let workloads = metacontrollers(&client).await?;
    writeln!(out, "\nMetacontroller")?;
    if workloads.is_empty() {
        writeln!(out, "  no Deployment or StatefulSet runs a metacontroller image")?;
    }
    for workload in &workloads {
        let Workload { kind, namespace, name, image, args, replicas, .. } = workload;
        writeln!(out, "  {kind} {namespace}/{name}: {image}, {replicas} replica(s)")?;
        writeln!(out, "    args: {}", if args.is_empty() { "none".to_owned() } else { args.join(" ") })?;
        let findings = flag_findings(args);
        if findings.is_empty() {
            writeln!(out, "    bosun takes these arguments as they are")?;
        }
        for finding in findings {
            writeln!(out, "    ! {finding}")?;
        }
    }

    let (composites, decorators) = crate::rbac::cluster_controllers(&client, &args.target_label_selector).await?;
    let mut controllers: Vec<Controller> = Vec::new();
    for composite in &composites {
        let spec = &composite.spec;
        controllers.push(Controller {
            needs: Needs::of_composite(composite),
            owners: vec![(spec.parent_resource.api_version.clone(), spec.parent_resource.resource.clone())],
            owned: spec.child_resources.iter().flatten().map(|child| (child.api_version.clone(), child.resource.clone())).collect(),
            spec: serde_json::to_value(spec)?,
        });
    }
    for decorator in &decorators {
        let spec = &decorator.spec;
        controllers.push(Controller {
            needs: Needs::of_decorator(decorator),
            owners: spec.resources.iter().map(|target| (target.api_version.clone(), target.resource.clone())).collect(),
            owned: spec
                .attachments
                .iter()
                .flatten()
                .map(|attachment| (attachment.api_version.clone(), attachment.resource.clone()))
                .collect(),
            spec: serde_json::to_value(spec)?,
        });
    }
    writeln!(out, "\nControllers: {} CompositeController(s), {} DecoratorController(s)", composites.len(), decorators.len())?;
    let mut types = Types { client: &client, groups: HashMap::new() };
    for controller in &controllers {
        controller.report(&client, &mut types, &mut out).await?;
    }

    writeln!(out, "\nAlso different in bosun, for every controller (docs/engine.md, \"Where bosun differs from Metacontroller\"):")?;
    for difference in [
        "a hook's whole response is validated before anything is written: children in another namespace than a namespaced parent, \
         cluster-scoped children of namespaced parents, owner references with controller: true to other objects and labels outside \
         the parent's selector are refused with a SyncError event, and nothing is written",
        "a selector matching objects without labels adopts nothing; orphans are adopted only after the hook answered validly",
        "retries back off to 60 s (Metacontroller: 1000 s); events fold by reason and message",
        "/metrics is served over HTTPS to callers the API server authenticates and authorizes for get on /metrics: bind the \
         ClusterRole bosun-metrics-reader (deploy/rbac.yaml) to Prometheus's ServiceAccount and scrape with its token, or pass \
         --metrics-secure=false to keep Metacontroller's plain HTTP",
        "hook URLs are printed (events, logs, metric labels) with user information, query values and fragment REDACTED",
    ] {
        writeln!(out, "  - {difference}")?;
    }

    let image = format!("ghcr.io/bosun-dev/bosun:{}", env!("CARGO_PKG_VERSION"));
    writeln!(out, "\nSteps")?;
    writeln!(out, "  1. bosun's CRDs (the same metacontroller.k8s.io/v1alpha1 types, plus its ControllerRevisions):")?;
    writeln!(out, "       bosun crds engine | kubectl apply --server-side --force-conflicts -f -")?;
    writeln!(out, "  2. Either swap the image, keeping Metacontroller's manifests, arguments and RBAC:")?;
    for Workload { kind, namespace, name, container, .. } in &workloads {
        writeln!(out, "       kubectl -n {namespace} set image {}/{name} {container}={image}", kind.to_ascii_lowercase())?;
    }
    if workloads.is_empty() {
        writeln!(out, "       kubectl -n <namespace> set image statefulset/metacontroller metacontroller={image}")?;
    }
    // Metacontroller stops first: two engines would both sync the same parents.
    writeln!(out, "     or stop Metacontroller and move to bosun's least-privilege deployment (deploy/, or the Helm chart):")?;
    for Workload { kind, namespace, name, .. } in &workloads {
        writeln!(out, "       kubectl -n {namespace} scale {}/{name} --replicas=0", kind.to_ascii_lowercase())?;
    }
    writeln!(out, "       bosun rbac | kubectl apply -f -")?;
    writeln!(out, "       kubectl apply --server-side -k deploy/")?;
    writeln!(out, "  3. Verify: each controller's `verify` command above shows its objects synced, and")?;
    writeln!(out, "       kubectl get events -A --field-selector reason=SyncError")?;
    writeln!(out, "     lists what bosun refused, and why.")?;
    Ok(out)
}

/// Prints the report.
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        print!("{}", report(&args).await?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metacontrollers_flags_are_checked_as_bosun_would_take_them() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        assert!(flag_findings(&args(&["--zap-log-level=4", "--discovery-interval=20s"])).is_empty());
        assert_eq!(
            flag_findings(&args(&["--pprof-address=:6060"])),
            ["--pprof-address=:6060: no counterpart in bosun; ignored with a warning"]
        );
        let refused = flag_findings(&args(&["--no-such-flag=1"]));
        assert!(refused.len() == 1 && refused[0].contains("--no-such-flag"), "{refused:?}");
    }

    #[test]
    fn credentials_are_found_on_the_webhook_or_its_host() {
        let spec = json!({
            "hooks": {
                "sync": { "webhook": { "url": "http://hooks.ops:8080/sync" } },
                "finalize": { "webhook": { "service": { "name": "hooks", "namespace": "ops" }, "path": "/finalize",
                              "authorization": { "secretRef": { "name": "t", "namespace": "ops", "key": "t" } } } },
            },
            "endpointConfigs": [{ "host": "hooks.ops:8080", "basicAuth": { "secretRef": { "name": "b", "namespace": "ops" } } }],
        });
        let urls = hook_urls(&spec);
        assert_eq!(
            urls,
            [
                ("finalize".to_owned(), "http://hooks.ops:80/finalize".to_owned()),
                ("sync".to_owned(), "http://hooks.ops:8080/sync".to_owned())
            ]
        );
        assert!(urls.iter().all(|(hook, url)| sends_credentials(&spec, hook, url)));
        assert!(!sends_credentials(&json!({ "hooks": { "sync": { "webhook": {} } } }), "sync", "http://other/sync"));
        let bare = json!({ "hooks": { "sync": { "webhook": {} } } });
        assert!(sends_credentials(&bare, "sync", "http://user:pw@other/sync"), "a password in the URL");
        assert!(!sends_credentials(&bare, "sync", "http://other/sync?next=a@b"), "an @ in the query is not user information");
    }
}
