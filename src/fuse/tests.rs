//! Unit tests for fusion: naming, merge rules, layout and digests, on temp task directories.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

use super::*;

/// Writes a task directory with `function.yaml` and the given extra files, and returns its spec.
fn task(root: &Path, name: &str, yaml: &str, files: &[(&str, &str)]) -> TaskSpec {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("function.yaml"), yaml).unwrap();
    for (rel, content) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let function: Value = serde_norway::from_str(yaml).unwrap();
    let runtime = function["spec"]["runtime"].as_str().unwrap().to_string();
    let handler = function["spec"]["handler"].as_str().unwrap().to_string();
    let (module, func) = handler.split_once(':').unwrap();
    TaskSpec {
        name: name.to_string(),
        dir,
        function,
        runtime,
        handler_module: module.to_string(),
        handler_function: func.to_string(),
    }
}

fn simple(root: &Path, name: &str, extra_spec: &str) -> TaskSpec {
    let yaml = format!(
        "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: {name}\n\
         spec:\n  runtime: python:3.11\n  handler: main:handler\n{extra_spec}"
    );
    task(
        root,
        name,
        &yaml,
        &[("main.py", "def handler(context, event):\n    return 1\n")],
    )
}

fn yaml(artifact: &Artifact) -> Value {
    serde_norway::from_str(&artifact.function_yaml).unwrap()
}

fn err_text(err: &Error) -> String {
    err.render("error:")
}

#[test]
fn name_joins_sorted_tasks() {
    let tasks = vec!["taskb".to_string(), "taska".to_string()];
    assert_eq!(function_name("shop", &tasks), "shop-taska-taskb");
    assert_eq!(function_name("shop", &["a".to_string()]), "shop-a");
}

#[test]
fn long_name_falls_back_to_first_task_and_hash_of_the_list() {
    let tasks: Vec<String> = [
        "checkout",
        "inventory",
        "payment",
        "shipping",
        "notification",
        "audit",
        "recommendations",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let name = function_name("shop", &tasks);
    let mut sorted = tasks.clone();
    sorted.sort();
    let hash = hex::encode(Sha256::digest(sorted.join(",").as_bytes()));
    assert_eq!(name, format!("shop-audit-{}", &hash[..8]));
    assert!(is_dns_label(&name, 56));
    // Order of the input does not matter.
    let mut reversed = tasks.clone();
    reversed.reverse();
    assert_eq!(function_name("shop", &reversed), name);
}

#[test]
fn fallback_name_fits_even_with_maximal_names() {
    let project = "p".repeat(40);
    let tasks = vec!["a".repeat(40), "b".repeat(40)];
    let name = function_name(&project, &tasks);
    assert!(is_dns_label(&name, 56), "{name}");
    assert_eq!(name.len(), 56);
}

#[test]
fn a_plain_name_over_56_characters_takes_the_hash_form_so_it_deploys_on_kubernetes() {
    // `nuclio-<function>` must be a 63-character DNS-1123 label on Kubernetes.
    let project = "shop";
    let tasks = vec!["a".repeat(25), "b".repeat(26)]; // plain: 4 + 1 + 25 + 1 + 26 = 57
    let name = function_name(project, &tasks);
    assert_ne!(name, format!("shop-{}-{}", "a".repeat(25), "b".repeat(26)));
    assert!(name.len() <= 56, "{name}");
    assert!(format!("nuclio-{name}").len() <= 63);
    let fits = vec!["a".repeat(25), "b".repeat(25)]; // plain: 56
    assert_eq!(
        function_name(project, &fits),
        format!("shop-{}-{}", "a".repeat(25), "b".repeat(25))
    );
}

#[test]
fn artifact_layout_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let a = task(
        tmp.path(),
        "taska",
        "metadata:\n  name: taska\nspec:\n  runtime: python:3.11\n  handler: main:handler\n",
        &[("main.py", "import utils\n"), ("utils.py", "A = 1\n")],
    );
    let b = task(
        tmp.path(),
        "taskb",
        "metadata:\n  name: taskb\nspec:\n  runtime: python:3.11\n  handler: app.entry:run\n",
        &[("app/entry.py", "import utils\n"), ("utils.py", "B = 2\n")],
    );
    let artifact = fuse_group("shop", &[&b, &a]).unwrap();
    assert_eq!(artifact.name, "shop-taska-taskb");
    assert_eq!(artifact.tasks, vec!["taska", "taskb"]);
    let paths: Vec<&str> = artifact.files.keys().map(String::as_str).collect();
    for expected in [
        "_fusionizer_entry.py",
        "function.yaml",
        "fusionizer_tasks/taska/function.yaml",
        "fusionizer_tasks/taska/main.py",
        "fusionizer_tasks/taska/utils.py",
        "fusionizer_tasks/taskb/app/entry.py",
        "fusionizer_tasks/taskb/function.yaml",
        "fusionizer_tasks/taskb/utils.py",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    for (rel, _) in DISPATCHER_FILES {
        assert!(paths.contains(&format!("fusionizer_dispatcher/{rel}").as_str()));
    }
    assert_eq!(
        artifact.files["fusionizer_tasks/taska/utils.py"],
        b"A = 1\n"
    );
    assert_eq!(
        artifact.files["fusionizer_tasks/taskb/utils.py"],
        b"B = 2\n"
    );

    let entry = String::from_utf8(artifact.files["_fusionizer_entry.py"].clone()).unwrap();
    assert_eq!(
        entry,
        "# Generated by fusionizer. Do not edit: rebuild with `fusionizer build`.\n\
         import os\n\nfrom fusionizer_dispatcher import Dispatcher\n\n\
         _dispatcher = Dispatcher(\n    function=\"shop-taska-taskb\",\n    \
         tasks={\"taska\": \"main:handler\", \"taskb\": \"app.entry:run\"},\n    \
         root=os.path.dirname(os.path.abspath(__file__)),\n)\n\
         init_context = _dispatcher.init_context\nhandler = _dispatcher.handler\n"
    );

    let doc = yaml(&artifact);
    assert_eq!(doc["apiVersion"], "nuclio.io/v1beta1");
    assert_eq!(doc["kind"], "NuclioFunction");
    assert_eq!(doc["metadata"]["name"], "shop-taska-taskb");
    assert_eq!(doc["metadata"]["labels"]["fusionizer.io/project"], "shop");
    assert_eq!(
        doc["metadata"]["labels"]["fusionizer.io/managed-by"],
        "fusionizer"
    );
    assert_eq!(
        doc["metadata"]["annotations"]["fusionizer.io/tasks"],
        "taska,taskb"
    );
    assert_eq!(
        doc["metadata"]["annotations"]["fusionizer.io/digest"],
        artifact.digest.as_str()
    );
    let task_digests = format!(
        "taska={},taskb={}",
        artifact.task_digests["taska"], artifact.task_digests["taskb"]
    );
    assert_eq!(
        doc["metadata"]["annotations"]["fusionizer.io/task-digests"],
        task_digests.as_str()
    );
    assert_eq!(doc["spec"]["handler"], "_fusionizer_entry:handler");
    assert_eq!(doc["spec"]["runtime"], "python:3.11");
    assert!(doc["spec"]["description"]
        .as_str()
        .unwrap()
        .contains("taska, taskb"));
    assert_eq!(
        artifact.files["function.yaml"],
        artifact.function_yaml.as_bytes()
    );
}

#[test]
fn digest_is_over_the_files_with_function_yaml_minus_its_digest_annotation() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    let artifact = fuse_group("shop", &[&a]).unwrap();
    let mut files = artifact.files.clone();
    let line = format!("    fusionizer.io/digest: {}\n", artifact.digest);
    assert!(artifact.function_yaml.contains(&line));
    let without = artifact.function_yaml.replace(&line, "");
    files.insert("function.yaml".into(), without.into_bytes());
    let mut hasher = Sha256::new();
    for (path, bytes) in &files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    assert_eq!(
        artifact.digest,
        format!("sha256:{}", hex::encode(hasher.finalize()))
    );
}

#[test]
fn same_inputs_same_bytes_and_one_changed_file_changes_only_its_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    let b = simple(tmp.path(), "taskb", "");
    let c = simple(tmp.path(), "taskc", "");
    let first = (
        fuse_group("shop", &[&a, &b]).unwrap(),
        fuse_group("shop", &[&c]).unwrap(),
    );
    let again = (
        fuse_group("shop", &[&b, &a]).unwrap(),
        fuse_group("shop", &[&c]).unwrap(),
    );
    assert_eq!(first, again);

    std::fs::write(tmp.path().join("taskb/main.py"), "changed = True\n").unwrap();
    let after = (
        fuse_group("shop", &[&a, &b]).unwrap(),
        fuse_group("shop", &[&c]).unwrap(),
    );
    assert_ne!(after.0.digest, first.0.digest);
    assert_eq!(after.0.task_digests["taska"], first.0.task_digests["taska"]);
    assert_ne!(after.0.task_digests["taskb"], first.0.task_digests["taskb"]);
    assert_eq!(after.1.digest, first.1.digest);
    assert_eq!(after.1.files, first.1.files);
}

#[test]
fn caches_and_git_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let a = task(
        tmp.path(),
        "taska",
        "spec:\n  runtime: python:3.11\n  handler: main:handler\n",
        &[
            ("main.py", "x = 1\n"),
            ("__pycache__/main.cpython-311.pyc", "junk"),
            ("stale.pyc", "junk"),
            (".git/HEAD", "ref"),
        ],
    );
    let artifact = fuse_group("shop", &[&a]).unwrap();
    let task_files: Vec<&str> = artifact
        .files
        .keys()
        .filter(|p| p.starts_with("fusionizer_tasks/"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        task_files,
        vec![
            "fusionizer_tasks/taska/function.yaml",
            "fusionizer_tasks/taska/main.py"
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_in_a_task_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    std::os::unix::fs::symlink("/etc/hostname", tmp.path().join("taska/link.txt")).unwrap();
    let err = fuse_group("shop", &[&a]).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    let text = err_text(&err);
    assert!(
        text.contains("task `taska` contains a symbolic link `link.txt`"),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
}

#[test]
fn runtime_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    let mut b = simple(tmp.path(), "taskb", "");
    b.function["spec"]["runtime"] = "python:3.9".into();
    let err = fuse_group("shop", &[&a, &b]).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    assert!(err_text(&err).contains(
        "tasks `taska` and `taskb` conflict on `spec.runtime`: `python:3.11` vs `python:3.9`"
    ));
}

#[test]
fn bare_python_is_python_3_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = simple(tmp.path(), "taska", "");
    a.function["spec"]["runtime"] = "python".into();
    let mut b = simple(tmp.path(), "taskb", "");
    b.function["spec"]["runtime"] = "python:3.9".into();
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    assert_eq!(yaml(&artifact)["spec"]["runtime"], "python:3.9");
}

#[test]
fn env_merges_by_name_and_conflicts_name_both_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  env:\n  - name: SHARED\n    value: \"1\"\n  - name: A_ONLY\n    value: a\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  env:\n  - name: B_ONLY\n    value: b\n  - name: SHARED\n    value: \"1\"\n",
    );
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    let env = yaml(&artifact)["spec"]["env"].clone();
    let names: Vec<&str> = env
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["SHARED", "A_ONLY", "B_ONLY"]);

    let c = simple(
        tmp.path(),
        "taskc",
        "  env:\n  - name: SHARED\n    value: \"2\"\n",
    );
    let err = fuse_group("shop", &[&a, &c]).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    assert!(err_text(&err)
        .contains("tasks `taska` and `taskc` conflict on `spec.env[SHARED]`: `1` vs `2`"));
}

#[test]
fn build_commands_concatenate_without_duplicates_keeping_post_copy_sections() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  build:\n    commands:\n    - pip install requests\n    - apt-get install -y \\\n    - curl\n    - '@nuclio.postCopy'\n    - python -m compileall .\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  build:\n    commands:\n    - pip install numpy\n    - pip install requests\n    - apt-get install -y \\\n    - jq\n",
    );
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    assert_eq!(
        artifact.build_commands,
        vec![
            "pip install requests",
            "apt-get install -y curl",
            "pip install numpy",
            "apt-get install -y jq",
            "@nuclio.postCopy",
            "python -m compileall .",
        ]
    );
    let doc = yaml(&artifact);
    assert_eq!(
        doc["spec"]["build"]["commands"]
            .as_sequence()
            .unwrap()
            .len(),
        artifact.build_commands.len()
    );
}

#[test]
fn a_trailing_backslash_never_joins_another_tasks_command() {
    // Nuclio joins an entry ending with `\` to the next entry (builder.go,
    // commandsToDirectives); a task's last entry ending with one just loses it, alone or fused.
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  build:\n    commands:\n    - '@nuclio.postCopy'\n    - echo a \\\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  build:\n    commands:\n    - '@nuclio.postCopy'\n    - echo b\n",
    );
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    assert_eq!(
        artifact.build_commands,
        vec!["@nuclio.postCopy", "echo a ", "echo b"]
    );
    // One that still ends with `\` once joined would take the next command with it
    // (tasks are fused in name order: `task0` comes before `taskb`).
    let joining = "  build:\n    commands:\n    - '@nuclio.postCopy'\n    - 'echo c \\\\'\n";
    let c = simple(tmp.path(), "task0", joining);
    let Err(err) = fuse_group("shop", &[&c, &b]) else {
        panic!("a command ending with a backslash before another was accepted");
    };
    assert!(
        err_text(&err).contains(
            "task `task0`: the build command `echo c \\` ends with `\\` once Nuclio joins its \
             continuation lines"
        ),
        "{}",
        err_text(&err)
    );
    // Last in the fused function, it joins nothing.
    let z = simple(tmp.path(), "taskz", joining);
    let artifact = fuse_group("shop", &[&b, &z]).unwrap();
    assert_eq!(
        artifact.build_commands,
        vec!["@nuclio.postCopy", "echo b", "echo c \\"]
    );
}

#[test]
fn build_commands_are_read_as_nuclio_reads_them() {
    use super::rules::nuclio_commands;
    // pkg/processor/build/builder_test.go, TestCommandsToDirectives, 1.14.1
    assert_eq!(
        nuclio_commands(&[
            "preCommand1 arg1 \\",
            "arg2 \\",
            "arg3",
            "preCommand2",
            "@nuclio.postCopy",
            "postCommand1",
        ]),
        (
            vec![
                "preCommand1 arg1 arg2 arg3".to_string(),
                "preCommand2".to_string()
            ],
            vec!["postCommand1".to_string()]
        )
    );
    // the backslash is the last byte, not the last non-blank; no space is added
    assert_eq!(
        nuclio_commands(&["echo 1\\", "2", "echo \\ ", "3"]),
        (
            vec![
                "echo 12".to_string(),
                "echo \\ ".to_string(),
                "3".to_string()
            ],
            vec![]
        )
    );
    // the marker inside a continuation switches, taking what was joined so far with it
    assert_eq!(
        nuclio_commands(&["pre", "echo a \\", " @nuclio.postCopy ", "post", "last \\"]),
        (
            vec!["pre".to_string()],
            vec![
                "echo a ".to_string(),
                "post".to_string(),
                "last ".to_string()
            ]
        )
    );
}

#[test]
fn post_copy_build_commands_follow_each_tasks_files_and_unsafe_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let commands = "  build:\n    commands:\n    - '@nuclio.postCopy'\n    - pip install -r /opt/nuclio/requirements.txt\n";
    let mut a = simple(tmp.path(), "taska", commands);
    std::fs::write(a.dir.join("requirements.txt"), "").unwrap();
    let b = simple(tmp.path(), "taskb", commands);
    // taskb has no requirements.txt: its command names nothing it has.
    let err = fuse_group("shop", &[&a, &b]).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    let text = err_text(&err);
    assert!(
        text.contains(
            "task `taskb`: the build command `pip install -r /opt/nuclio/requirements.txt` names \
             `/opt/nuclio/requirements.txt`: the task's directory holds no such file"
        ),
        "{text}"
    );
    assert!(
        text.contains("/opt/nuclio/fusionizer_tasks/<task>/"),
        "{text}"
    );
    std::fs::write(b.dir.join("requirements.txt"), "").unwrap();
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    // Each task's own file, so the two commands are no longer duplicates of each other.
    let expected = vec![
        "@nuclio.postCopy",
        "pip install -r /opt/nuclio/fusionizer_tasks/taska/requirements.txt",
        "pip install -r /opt/nuclio/fusionizer_tasks/taskb/requirements.txt",
    ];
    assert_eq!(artifact.build_commands, expected);
    let doc = yaml(&artifact);
    assert_eq!(
        doc["spec"]["build"]["commands"],
        serde_norway::to_value(&expected).unwrap()
    );
    assert!(artifact
        .files
        .contains_key("fusionizer_tasks/taska/requirements.txt"));
    assert_eq!(
        artifact
            .build_rewrites
            .iter()
            .map(|r| (r.task.as_str(), r.to.as_str()))
            .collect::<Vec<_>>(),
        [("taska", expected[1]), ("taskb", expected[2]),]
    );
    // The task's own function.yaml is untouched.
    a = simple(tmp.path(), "taska", commands);
    assert_eq!(
        a.function["spec"]["build"]["commands"][1],
        "pip install -r /opt/nuclio/requirements.txt"
    );
}

#[test]
fn one_http_trigger_with_the_most_workers_other_triggers_unioned() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  triggers:\n    myhttp:\n      kind: http\n      numWorkers: 2\n      attributes:\n        port: 32001\n    tick:\n      kind: cron\n      attributes:\n        interval: 10s\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  triggers:\n    http:\n      kind: http\n      maxWorkers: 4\n      attributes:\n        maxRequestBodySize: 8388608\n",
    );
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    assert_eq!(artifact.num_workers, 4);
    let triggers = yaml(&artifact)["spec"]["triggers"].clone();
    let keys: Vec<&str> = triggers
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["myhttp", "tick"]);
    let http = &triggers["myhttp"];
    assert_eq!(http["name"], "myhttp");
    assert_eq!(http["numWorkers"], 4);
    assert_eq!(http["attributes"]["port"], 32001);
    assert_eq!(http["attributes"]["maxRequestBodySize"], 8_388_608);
    assert_eq!(triggers["tick"]["kind"], "cron");
    assert_eq!(
        triggers["tick"]["attributes"]["event"]["headers"]["Task-Name"],
        "taska"
    );

    let c = simple(
        tmp.path(),
        "taskc",
        "  triggers:\n    http:\n      kind: http\n      attributes:\n        port: 32002\n    tick:\n      kind: cron\n      attributes:\n        interval: 20s\n",
    );
    let err = err_text(&fuse_group("shop", &[&a, &c]).unwrap_err());
    assert!(err.contains(
        "tasks `taska` and `taskc` conflict on `spec.triggers.myhttp.attributes.port`: `32001` vs `32002`"
    ), "{err}");
    // Each task keeps its own cron trigger (namespaced, see below): only the port conflicts.
    assert!(err.contains("(1 problem)"), "{err}");
}

#[test]
fn non_http_triggers_stay_each_task_s_own_and_the_entry_routes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  triggers:\n    tick:\n      kind: cron\n      attributes:\n        interval: 10s\n        event:\n          body: hello\n          headers:\n            X-From: cron\n    orders:\n      kind: kafka-cluster\n      attributes:\n        topics: [orders]\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  triggers:\n    tick:\n      kind: cron\n      attributes:\n        schedule: \"*/5 * * * *\"\n    audit:\n      kind: nats\n      attributes:\n        topic: audit\n",
    );
    let artifact = fuse_group("shop", &[&a, &b]).unwrap();
    let triggers = yaml(&artifact)["spec"]["triggers"].clone();
    let keys: Vec<&str> = triggers
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    // `tick` clashes, so both are namespaced (key == name, as Nuclio requires); the others keep
    // their names.
    assert_eq!(keys, vec!["audit", "orders", "taska-tick", "taskb-tick"]);
    assert_eq!(triggers["taska-tick"]["name"], "taska-tick");
    assert_eq!(triggers["taskb-tick"]["name"], "taskb-tick");
    // Cron events carry the task in a header (both Nuclio cron modes), next to the user's own.
    let event = &triggers["taska-tick"]["attributes"]["event"];
    assert_eq!(event["headers"]["Task-Name"], "taska");
    assert_eq!(event["headers"]["X-From"], "cron");
    assert_eq!(event["body"], "hello");
    assert_eq!(
        triggers["taskb-tick"]["attributes"]["event"]["headers"]["Task-Name"],
        "taskb"
    );
    assert!(triggers["orders"]["attributes"]["event"].is_null());
    // The entry maps every non-HTTP trigger to its task.
    let entry = String::from_utf8(artifact.files["_fusionizer_entry.py"].clone()).unwrap();
    assert!(
        entry.contains(
            "triggers={\"audit\": \"taskb\", \"orders\": \"taska\", \"taska-tick\": \"taska\", \"taskb-tick\": \"taskb\"},"
        ),
        "{entry}"
    );
}

#[test]
fn the_proxy_url_is_baked_into_functions_on_nuctl_only_and_enters_the_digest() {
    let fx = parsed(
        "[project]\nname = \"shop\"\nplatform = \"nuctl\"\n[nuctl]\nproxy-url = \"http://fz.tools.svc.cluster.local:8000\"\n",
    );
    assert_eq!(
        baked_env(&fx),
        BTreeMap::from([(
            "FUSIONIZER_PROXY_URL".to_string(),
            "http://fz.tools.svc.cluster.local:8000".to_string()
        )])
    );
    let advertised = parsed(
        "[project]\nname = \"shop\"\nplatform = \"nuctl\"\n[serve]\nlisten = \"0.0.0.0:9000\"\nadvertise = \"fz.tools.svc\"\ntoken-env = \"T\"\n",
    );
    assert_eq!(
        baked_env(&advertised)["FUSIONIZER_PROXY_URL"],
        "http://fz.tools.svc:9000"
    );
    let local = parsed("[project]\nname = \"shop\"\n[serve]\nadvertise = \"fz\"\n");
    assert!(baked_env(&local).is_empty());
    let nothing = parsed("[project]\nname = \"shop\"\nplatform = \"nuctl\"\n");
    assert!(baked_env(&nothing).is_empty());

    // Baked in, replacing a task's own value; a different proxy is a different digest.
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  env:\n  - name: FUSIONIZER_PROXY_URL\n    value: http://stale\n  - name: KEEP\n    value: \"1\"\n",
    );
    let fused = |url: &str| {
        let env = BTreeMap::from([("FUSIONIZER_PROXY_URL".to_string(), url.to_string())]);
        let specs = BTreeMap::from([("taska".to_string(), a.clone())]);
        fuse_grouping("shop", &specs, &Grouping::new([["taska"]]), &env)
            .unwrap()
            .remove(0)
    };
    let one = fused("http://one:8000");
    let env = yaml(&one)["spec"]["env"].clone();
    let env = env.as_sequence().unwrap();
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[0]["name"], "KEEP");
    assert_eq!(env[1]["name"], "FUSIONIZER_PROXY_URL");
    assert_eq!(env[1]["value"], "http://one:8000");
    assert_ne!(one.digest, fused("http://two:8000").digest);
}

#[test]
fn no_http_trigger_means_one_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    assert_eq!(fuse_group("shop", &[&a]).unwrap().num_workers, 1);
}

#[test]
fn resources_and_timeouts_take_the_largest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  eventTimeout: 1m\n  readinessTimeoutSeconds: 60\n  resources:\n    requests:\n      cpu: 500m\n      memory: 1Gi\n    limits:\n      memory: 2Gi\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  eventTimeout: 90s\n  readinessTimeoutSeconds: 30\n  resources:\n    requests:\n      cpu: \"1\"\n      memory: 512Mi\n    limits:\n      cpu: 2\n",
    );
    let doc = yaml(&fuse_group("shop", &[&a, &b]).unwrap());
    let spec = &doc["spec"];
    assert_eq!(spec["eventTimeout"], "90s");
    assert_eq!(spec["readinessTimeoutSeconds"], 60);
    assert_eq!(spec["resources"]["requests"]["cpu"], "1");
    assert_eq!(spec["resources"]["requests"]["memory"], "1Gi");
    assert_eq!(spec["resources"]["limits"]["memory"], "2Gi");
    assert_eq!(spec["resources"]["limits"]["cpu"], 2);
}

#[test]
fn labels_annotations_volumes_unioned_and_other_fields_kept_or_conflicting() {
    let tmp = tempfile::tempdir().unwrap();
    let a = task(
        tmp.path(),
        "taska",
        "metadata:\n  name: taska\n  labels:\n    team: red\n  annotations:\n    note: a\n\
         spec:\n  runtime: python:3.11\n  handler: main:handler\n  minReplicas: 1\n  \
         platform:\n    attributes:\n      network: fusion\n  volumes:\n  - volume:\n      name: data\n      hostPath:\n        path: /srv/data\n    volumeMount:\n      name: data\n      mountPath: /data\n",
        &[("main.py", "")],
    );
    let b = task(
        tmp.path(),
        "taskb",
        "metadata:\n  name: taskb\n  labels:\n    team: red\n    tier: back\n\
         spec:\n  runtime: python:3.11\n  handler: main:handler\n  maxReplicas: 3\n  \
         platform:\n    attributes:\n      restartPolicy:\n        name: always\n  volumes:\n  - volume:\n      name: data\n      hostPath:\n        path: /srv/data\n    volumeMount:\n      name: data\n      mountPath: /data\n",
        &[("main.py", "")],
    );
    let doc = yaml(&fuse_group("shop", &[&a, &b]).unwrap());
    assert_eq!(doc["metadata"]["labels"]["team"], "red");
    assert_eq!(doc["metadata"]["labels"]["tier"], "back");
    assert_eq!(doc["metadata"]["annotations"]["note"], "a");
    assert_eq!(doc["spec"]["minReplicas"], 1);
    assert_eq!(doc["spec"]["maxReplicas"], 3);
    assert_eq!(doc["spec"]["platform"]["attributes"]["network"], "fusion");
    assert_eq!(
        doc["spec"]["platform"]["attributes"]["restartPolicy"]["name"],
        "always"
    );
    assert_eq!(doc["spec"]["volumes"].as_sequence().unwrap().len(), 1);

    let mut c = simple(tmp.path(), "taskc", "  minReplicas: 2\n");
    c.function["metadata"]["labels"] = serde_norway::from_str("team: blue").unwrap();
    let err = err_text(&fuse_group("shop", &[&a, &c]).unwrap_err());
    assert!(
        err.contains("tasks `taska` and `taskc` conflict on `spec.minReplicas`: `1` vs `2`"),
        "{err}"
    );
    assert!(
        err.contains(
            "tasks `taska` and `taskc` conflict on `metadata.labels.team`: `red` vs `blue`"
        ),
        "{err}"
    );
}

#[test]
fn reserved_labels_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = simple(tmp.path(), "taska", "");
    a.function["metadata"]["labels"] =
        serde_norway::from_str("fusionizer.io/project: other").unwrap();
    let err = err_text(&fuse_group("shop", &[&a]).unwrap_err());
    assert!(
        err.contains(
            "task `taska` sets `metadata.labels.fusionizer.io/project`, which fusionizer reserves"
        ),
        "{err}"
    );
}

#[test]
fn single_task_keeps_its_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  env:\n  - name: X\n    value: y\n  build:\n    commands:\n    - pip install requests\n",
    );
    let artifact = fuse_group("shop", &[&a]).unwrap();
    let doc = yaml(&artifact);
    assert_eq!(doc["spec"]["env"][0]["value"], "y");
    assert_eq!(artifact.build_commands, vec!["pip install requests"]);
    assert_eq!(artifact.name, "shop-taska");
}

#[test]
fn quantities_and_go_durations_parse() {
    use rules::{go_duration_seconds, quantity};
    assert_eq!(quantity(&"500m".into()), Some(0.5));
    assert_eq!(quantity(&"128Mi".into()), Some(128.0 * 1024.0 * 1024.0));
    assert_eq!(quantity(&"1e3".into()), Some(1000.0));
    assert_eq!(quantity(&"lots".into()), None);
    assert_eq!(go_duration_seconds("1m30s"), Some(90.0));
    assert_eq!(go_duration_seconds("500ms"), Some(0.5));
    assert_eq!(go_duration_seconds("0"), Some(0.0));
    assert_eq!(go_duration_seconds("soon"), None);
}

fn workspace(root: &Path) -> Workspace {
    Workspace {
        config: crate::config::Config {
            file: root.join("fusion.toml"),
            root: root.to_path_buf(),
            state_dir: root.join(crate::contract::STATE_DIR),
            overlay: None,
            project: crate::config::ProjectConfig {
                name: "shop".into(),
                platform: crate::config::PlatformKind::default(),
            },
            tasks: BTreeMap::new(),
            phases: Vec::new(),
            serve: crate::config::ServeConfig::default(),
            nuctl: crate::config::NuctlConfig::default(),
            optimizer: crate::config::OptimizerConfig::default(),
            overrides: Vec::new(),
        },
        specs: BTreeMap::new(),
    }
}

#[test]
fn fuse_all_reports_every_conflict_of_every_group_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let env = |v: &str| format!("  env:\n  - name: MODE\n    value: {v}\n");
    let specs: BTreeMap<String, TaskSpec> = [
        simple(tmp.path(), "a", &env("x")),
        simple(tmp.path(), "b", &env("y")),
        simple(tmp.path(), "c", "  minReplicas: 1\n"),
        simple(tmp.path(), "d", "  minReplicas: 2\n"),
        simple(tmp.path(), "e", ""),
    ]
    .into_iter()
    .map(|s| (s.name.clone(), s))
    .collect();
    let ws = workspace(tmp.path());
    let grouping = Grouping::new([vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    let err = fuse_all(&ws, &specs, &grouping).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    assert_eq!(err.message, "cannot fuse 2 groups (2 problems)");
    assert_eq!(
        err.details,
        vec![
            "`shop-a-b`: tasks `a` and `b` conflict on `spec.env[MODE]`: `x` vs `y`",
            "`shop-c-d`: tasks `c` and `d` conflict on `spec.minReplicas`: `1` vs `2`",
        ]
    );

    // In the grouping's order, which is sorted: given as `[e] [a]`, it is `[a] [e]`.
    let ok = fuse_all(&ws, &specs, &Grouping::new([["e"], ["a"]])).unwrap();
    let names: Vec<&str> = ok.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["shop-a", "shop-e"]);
}

#[test]
fn null_fields_count_as_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "  env:\n  triggers:\n");
    let b = simple(tmp.path(), "taskb", "  env:\n  - name: X\n    value: y\n");
    let doc = yaml(&fuse_group("shop", &[&a, &b]).unwrap());
    assert_eq!(doc["spec"]["env"][0]["name"], "X");
    assert!(doc["spec"]["triggers"].is_null());
}

#[test]
fn an_empty_group_is_an_error() {
    let err = fuse_group("shop", &[]).unwrap_err();
    assert!(err_text(&err).contains("a group needs at least one task"));
}

#[test]
fn build_base_image_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  build:\n    baseImage: python:3.11-slim\n",
    );
    let b = simple(
        tmp.path(),
        "taskb",
        "  build:\n    baseImage: python:3.11\n",
    );
    let c = simple(
        tmp.path(),
        "taskc",
        "  build:\n    baseImage: python:3.11-slim\n",
    );
    let err = err_text(&fuse_group("shop", &[&a, &b]).unwrap_err());
    assert!(
        err.contains(
            "tasks `taska` and `taskb` conflict on `spec.build.baseImage`: `python:3.11-slim` vs \
             `python:3.11`"
        ),
        "{err}"
    );
    let doc = yaml(&fuse_group("shop", &[&a, &c]).unwrap());
    assert_eq!(doc["spec"]["build"]["baseImage"], "python:3.11-slim");
}

/// The details of fusing `tasks` as one group with [`fuse_all`] (exit 78 asserted).
fn refused(root: &Path, tasks: Vec<TaskSpec>) -> Vec<String> {
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let specs: BTreeMap<String, TaskSpec> =
        tasks.into_iter().map(|t| (t.name.clone(), t)).collect();
    let err = fuse_all(&workspace(root), &specs, &Grouping::new([names])).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    assert!(
        err.hint
            .as_deref()
            .unwrap_or_default()
            .contains("Nuclio 1.14 validates every function it deploys"),
        "{:?}",
        err.hint
    );
    err.details
}

#[test]
fn min_replicas_of_one_task_above_max_replicas_of_another_is_what_nuclio_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let details = refused(
        tmp.path(),
        vec![
            simple(tmp.path(), "taska", "  minReplicas: 3\n"),
            simple(tmp.path(), "taskb", "  maxReplicas: 2\n"),
        ],
    );
    assert_eq!(
        details,
        [
            "`shop-taska-taskb`: Nuclio would reject `shop-taska-taskb` (validateMinMaxReplicas): \
          Min replicas must be less than or equal to max replicas"
        ]
    );
    // fuse_group (build of one group) refuses it too, naming the function.
    let a = simple(tmp.path(), "taska", "  minReplicas: 3\n");
    let b = simple(tmp.path(), "taskb", "  maxReplicas: 2\n");
    let err = fuse_group("shop", &[&a, &b]).unwrap_err();
    assert_eq!(err.code, ExitCode::Config);
    assert_eq!(
        err.details,
        ["Nuclio would reject `shop-taska-taskb` (validateMinMaxReplicas): Min replicas must be \
          less than or equal to max replicas"]
    );
}

#[test]
fn the_largest_num_workers_over_nuclio_s_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let http = |n: u64| format!("  triggers:\n    web:\n      kind: http\n      numWorkers: {n}\n");
    let details = refused(
        tmp.path(),
        vec![
            simple(tmp.path(), "taska", &http(4)),
            simple(tmp.path(), "taskb", &http(100_001)),
        ],
    );
    assert_eq!(
        details,
        [
            "`shop-taska-taskb`: Nuclio would reject `shop-taska-taskb` (validateTriggers): \
          NumWorkers value for web trigger (100001) exceeds the limit of 100000"
        ]
    );
}

#[test]
fn a_v3io_stream_of_one_task_with_replicas_of_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let details = refused(
        tmp.path(),
        vec![
            simple(
                tmp.path(),
                "taska",
                "  triggers:\n    stream:\n      kind: v3ioStream\n",
            ),
            simple(tmp.path(), "taskb", "  minReplicas: 1\n"),
            simple(tmp.path(), "taskc", "  maxReplicas: 3\n"),
        ],
    );
    assert_eq!(
        details,
        [
            "`shop-taska-taskb-taskc`: Nuclio would reject `shop-taska-taskb-taskc` \
          (validateTriggers): V3IO Stream trigger does not support autoscaling"
        ]
    );
}

#[test]
fn an_allocation_annotation_of_one_task_with_explicit_ack_of_another_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = simple(tmp.path(), "taska", "");
    a.function["metadata"]["annotations"] =
        serde_norway::from_str("nuclio.io/kafka-worker-allocation-mode: pool").unwrap();
    let b = simple(
        tmp.path(),
        "taskb",
        "  triggers:\n    orders:\n      kind: kafka-cluster\n      explicitAckMode: enable\n",
    );
    assert_eq!(
        refused(tmp.path(), vec![a, b]),
        [
            "`shop-taska-taskb`: Nuclio would reject `shop-taska-taskb` (validateTriggers): \
          Explicit ack mode is not allowed when using worker pool allocation mode"
        ]
    );
}

#[test]
fn scale_to_zero_of_one_task_without_http_of_another_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let details = refused(
        tmp.path(),
        vec![
            simple(tmp.path(), "taska", "  minReplicas: 0\n  maxReplicas: 2\n"),
            simple(
                tmp.path(),
                "taskb",
                "  disableDefaultHTTPTrigger: true\n  triggers:\n    tick:\n      kind: cron\n",
            ),
        ],
    );
    assert_eq!(
        details,
        [
            "`shop-taska-taskb`: Nuclio would reject `shop-taska-taskb` (validateScaleToZero): \
          Function can not be scaling to zero without http trigger. Either enable default http \
          trigger creation or create custom http trigger"
        ]
    );
}

#[test]
fn a_trigger_whose_key_is_not_its_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let details = refused(
        tmp.path(),
        vec![simple(
            tmp.path(),
            "taska",
            "  triggers:\n    taska-orders:\n      kind: kafka-cluster\n      name: orders\n",
        )],
    );
    assert_eq!(
        details,
        [
            "`shop-taska`: Nuclio would reject `shop-taska` (validateTriggers): Trigger key and \
          name mismatch (taska-orders != orders)"
        ]
    );
}

/// fusion.toml text parsed as if it lived in `/project`.
fn parsed(text: &str) -> crate::config::Config {
    crate::config::parse(Path::new("/project/fusion.toml"), text).unwrap()
}

#[test]
fn check_group_finds_conflicts_without_reading_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(tmp.path(), "taska", "");
    let b = simple(tmp.path(), "taskb", "");
    assert!(check_group("shop", &[&a, &b]).is_empty());
    let mut c = simple(tmp.path(), "taskc", "");
    c.function["spec"]["runtime"] = "python:3.10".into();
    // The directory is gone: the check reads only the loaded specs.
    std::fs::remove_dir_all(tmp.path().join("taska")).unwrap();
    let problems = check_group("shop", &[&a, &c]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].to_string().contains("spec.runtime"),
        "{}",
        problems[0]
    );
}

#[test]
fn an_override_sets_the_memory_limit_of_exactly_its_group() {
    let tmp = tempfile::tempdir().unwrap();
    let a = simple(
        tmp.path(),
        "taska",
        "  resources:\n    limits:\n      memory: 1Gi\n      cpu: \"1\"\n",
    );
    let b = simple(tmp.path(), "taskb", "");
    let specs: BTreeMap<String, TaskSpec> = [(a.name.clone(), a), (b.name.clone(), b)]
        .into_iter()
        .collect();
    let over = vec![Override {
        tasks: vec!["taska".into(), "taskb".into()],
        memory_limit: Some("96Mi".into()),
    }];
    let grouping = Grouping::new([["taska", "taskb"]]);
    let fused = fuse_grouping_with("shop", &specs, &grouping, &BTreeMap::new(), &over).unwrap();
    let doc = yaml(&fused[0]);
    assert_eq!(
        doc["spec"]["resources"]["limits"]["memory"].as_str(),
        Some("96Mi")
    );
    assert_eq!(
        doc["spec"]["resources"]["limits"]["cpu"].as_str(),
        Some("1")
    );
    // Another task set: the override does not apply.
    let alone = Grouping::new([["taska"], ["taskb"]]);
    let fused = fuse_grouping_with("shop", &specs, &alone, &BTreeMap::new(), &over).unwrap();
    assert_eq!(
        yaml(&fused[0])["spec"]["resources"]["limits"]["memory"].as_str(),
        Some("1Gi")
    );
    assert!(yaml(&fused[1])["spec"].get("resources").is_none());
}

#[test]
fn a_task_given_twice_in_one_group_is_refused_once_per_repeat_and_check_group_merely_dedups() {
    let tmp = tempfile::tempdir().unwrap();
    let a = task(
        tmp.path(),
        "taska",
        "metadata:\n  name: taska\nspec:\n  runtime: python:3.11\n  handler: main:handler\n",
        &[("main.py", "")],
    );
    let b = task(
        tmp.path(),
        "taskb",
        "metadata:\n  name: taskb\nspec:\n  runtime: python:3.11\n  handler: main:handler\n",
        &[("main.py", "")],
    );
    let err = fuse_group("shop", &[&b, &a, &a, &a]).unwrap_err();
    let err = format!("{err}\n{}", err.details.join("\n"));
    assert_eq!(
        err.matches("task `taska` is listed twice in one group")
            .count(),
        2,
        "{err}"
    );
    assert!(!err.contains("taskb` is listed"), "{err}");
    assert!(check_group("shop", &[&a, &b, &a]).is_empty());
    assert!(matches!(
        check_group("shop", &[]).as_slice(),
        [FuseError::Empty]
    ));
}
