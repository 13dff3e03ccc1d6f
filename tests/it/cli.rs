//! The command line itself: options, help, exit codes.

use crate::util::Project;

#[test]
fn test_cli_help_lists_sam_and_lamina_options() {
    let out = Project::empty().invoke(&["--help"]).output();
    assert_eq!(out.code, 0);
    for option in [
        "--template-file",
        "--parameter-overrides",
        "--event",
        "--env-vars",
        "--debug-port",
        "--debugger-path",
        "--debug-args",
        "--docker-volume-basedir",
        "--docker-network",
        "--log-file",
        "--layer-cache-basedir",
        "--skip-pull-image",
        "--force-image-build",
        "--profile",
        "--region",
        "--config-file",
        "--config-env",
        "--debug",
        "--container-env-vars",
        "--add-host",
        "--container-dns",
        "--invoke-image",
        "--runtime",
        "--no-memory-limit",
        "--mount-symlinks",
        "--shutdown",
        "--tenant-id",
        "--container-host",
        "--container-host-interface",
        "--hook-name",
        "--save-params",
        "--beta-features",
        "--language-extensions",
        "--durable-execution-name",
        "--network",
        "--emulator",
        "--dry-run",
    ] {
        assert!(out.stdout.contains(option), "--help does not list {option}");
    }
    assert!(
        out.stdout.contains("Exit codes:"),
        "--help documents exit codes"
    );
}

#[test]
fn test_cli_short_flags_and_aliases() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&[
        "-t",
        "template.yaml",
        "-e",
        "events.json",
        "-n",
        "env.json",
        "-r",
        "PYTHON3.13",
        "-l",
        "out.log",
        "-v",
        ".",
        "-d",
        "5858",
        "-ii",
        "example.com/custom:1",
        "HelloWorldFunction",
        "--parameter-overrides",
        "TableName=t",
    ]);
    assert_eq!(plan["runtime"], "python3.13", "-r is case-insensitive");
    assert_eq!(
        plan["image"], "example.com/custom:1",
        "-ii is --invoke-image"
    );
    assert_eq!(plan["debug"]["ports"][0], 5858);
    assert_eq!(
        plan["log_file"],
        project.path().join("out.log").to_str().unwrap()
    );
    assert!(plan["event"].as_str().unwrap().contains("/hello"));
    // --template is an alias of --template-file.
    let plan = project.dry_run(&["--template", "template.yaml", "HelloWorldFunction"]);
    assert_eq!(plan["function"], "HelloWorldFunction");
}

#[test]
fn test_cli_option_environment_variables() {
    let project = Project::fixture("hello-python").file(
        "other/t.yaml",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/projects/hello-python/template.yaml"
        ))
        .unwrap(),
    );
    std::fs::create_dir_all(project.path().join("other/hello_world")).unwrap();
    let plan = project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .env("SAM_TEMPLATE_FILE", "other/t.yaml")
        .env("SAM_DEBUG_PORT", "6000")
        .env("SAM_SKIP_PULL_IMAGE", "true")
        .env("SAM_FORCE_IMAGE_BUILD", "1")
        .env("SAM_DOCKER_NETWORK", "host")
        .env("SAM_LAYER_CACHE_BASEDIR", "/tmp/layers-here")
        .env("DEBUGGER_ARGS", "-m debugpy --listen 0.0.0.0:6000")
        .success_json();
    assert!(plan["template"].as_str().unwrap().ends_with("other/t.yaml"));
    assert_eq!(plan["debug"]["ports"][0], 6000);
    assert_eq!(plan["debug"]["args"][0], "-m");
    assert_eq!(plan["skip_pull_image"], true);
    assert_eq!(plan["force_image_build"], true);
    assert_eq!(plan["network"], "host");
    assert_eq!(plan["layer_cache_dir"], "/tmp/layers-here");
    assert_eq!(
        plan["timeout"], 36000,
        "debug mode raises the timeout as SAM does"
    );
    // The command line beats the environment.
    let plan = project
        .invoke(&[
            "HelloWorldFunction",
            "--dry-run",
            "-t",
            "template.yaml",
            "--docker-network",
            "none",
        ])
        .env("SAM_TEMPLATE_FILE", "other/t.yaml")
        .env("SAM_DOCKER_NETWORK", "host")
        .success_json();
    assert!(
        plan["template"]
            .as_str()
            .unwrap()
            .ends_with("/template.yaml")
    );
    assert_eq!(plan["network"], "none");
}

#[test]
fn test_cli_network_and_emulator() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&["HelloWorldFunction"]);
    assert_eq!(plan["network"], "private", "private is the default");
    assert_eq!(plan["emulator"], "builtin");
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--network",
        "none",
        "--emulator",
        "rie",
    ]);
    assert_eq!(plan["network"], "none");
    assert_eq!(plan["emulator"], "rie");
    let out = project
        .invoke(&[
            "HelloWorldFunction",
            "--docker-network",
            "my-compose-net",
            "--dry-run",
        ])
        .output();
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("lamina has no Docker networks"),
        "{}",
        out.stderr
    );
    project
        .invoke(&["HelloWorldFunction", "--network", "bridge", "--dry-run"])
        .fails(2, &["bridge"]);
    project
        .invoke(&[
            "HelloWorldFunction",
            "--network",
            "none",
            "--docker-network",
            "host",
            "--dry-run",
        ])
        .fails(2, &["--network none conflicts with --docker-network host"]);
}

#[test]
fn test_cli_usage_errors_exit_2() {
    let project = Project::fixture("hello-python");
    project
        .invoke(&["--no-such-option"])
        .fails(2, &["--no-such-option"]);
    project.invoke(&["-d", "notaport"]).fails(2, &["notaport"]);
    project
        .invoke(&["--add-host", "nocolon"])
        .fails(2, &["--add-host is not a valid format"]);
    project
        .invoke(&["--add-host", "db:not-an-ip"])
        .fails(2, &["not-an-ip"]);
    project
        .invoke(&["--container-dns", "x.y"])
        .fails(2, &["x.y"]);
    project
        .invoke(&["--runtime", "cobol1.0"])
        .fails(2, &["cobol1.0"]);
    project
        .invoke(&["--tenant-id", "   "])
        .fails(2, &["tenant id"]);
    project
        .invoke(&["--region", "not_a_region!", "--dry-run"])
        .fails(1, &["Provided region: not_a_region! doesn't match"]);
    project
        .invoke(&["-n", "missing-env.json"])
        .fails(2, &["missing-env.json"]);
    project
        .invoke(&["--hook-name", "pulumi"])
        .fails(2, &["pulumi"]);
    project
        .invoke(&["--skip-prepare-infra"])
        .fails(2, &["--hook-name"]);
    project
        .invoke(&["--hook-name", "terraform", "-t", "template.yaml"])
        .fails(2, &["--hook-name"]);
    project
        .invoke(&["--hook-name", "terraform", "--dry-run"])
        .fails(1, &["does not run IaC hooks"]);
}

#[test]
fn test_cli_parameter_overrides_swallow_following_tokens_like_sam() {
    // SAM's nargs option eats tokens up to the next option, so a function id after it is a value.
    let project = Project::fixture("hello-python");
    project
        .invoke(&[
            "--parameter-overrides",
            "TableName=t",
            "HelloWorldFunction",
            "--dry-run",
        ])
        .fails(2, &["HelloWorldFunction is not a valid format"]);
}

#[test]
fn test_cli_debug_port_variable_may_hold_several_ports() {
    let plan = Project::fixture("hello-python")
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .env("SAM_DEBUG_PORT", "5858 5859")
        .success_json();
    assert_eq!(plan["debug"]["ports"], serde_json::json!([5858, 5859]));
}

#[test]
fn test_cli_network_from_environment_yields_to_explicit_network() {
    let plan = Project::fixture("hello-python")
        .invoke(&["HelloWorldFunction", "--dry-run", "--network", "none"])
        .env("SAM_DOCKER_NETWORK", "host")
        .success_json();
    assert_eq!(plan["network"], "none");
}

#[test]
fn test_cli_empty_parameter_overrides_mean_none() {
    let plan = Project::fixture("hello-python").dry_run(&[
        "HelloWorldFunction",
        "--parameter-overrides",
        "",
    ]);
    assert_eq!(crate::util::env_var(&plan, "STAGE"), Some("dev"));
    Project::fixture("hello-python")
        .invoke(&[
            "HelloWorldFunction",
            "--parameter-overrides",
            "Stage-Name=x",
            "--dry-run",
        ])
        .fails(2, &["Stage-Name=x is not a valid format"]);
}
