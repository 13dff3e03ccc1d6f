//! samconfig files: defaults per environment, below the command line and option variables.

use crate::util::{Project, env_var};

#[test]
fn test_samconfig_toml_defaults() {
    let project = Project::fixture("samconfig-project");
    let plan = project.dry_run(&[]);
    assert_eq!(env_var(&plan, "STAGE"), Some("from-samconfig"));
    assert_eq!(env_var(&plan, "COLOR"), Some("blue"));
    assert_eq!(
        env_var(&plan, "AWS_REGION"),
        Some("eu-west-1"),
        "global section applies"
    );
    assert_eq!(plan["skip_pull_image"], true);
    assert_eq!(plan["add_hosts"][0], "db.local:127.0.0.1");
    assert_eq!(
        plan["debug"]["ports"][0], 5890,
        "a scalar for a multi-value option"
    );
    assert_eq!(plan["mount_symlinks"], false);
}

#[test]
fn test_samconfig_precedence() {
    let project = Project::fixture("samconfig-project");
    // Command line beats samconfig, for parameters and for options.
    let plan = project.dry_run(&[
        "--parameter-overrides",
        "Stage=cli",
        "--region",
        "us-west-2",
        "-d",
        "7000",
    ]);
    assert_eq!(env_var(&plan, "STAGE"), Some("cli"));
    assert_eq!(
        env_var(&plan, "COLOR"),
        Some("red"),
        "samconfig overrides are replaced as a whole"
    );
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("us-west-2"));
    assert_eq!(plan["debug"]["ports"], serde_json::json!([7000]));
    // An option variable beats samconfig too.
    let plan = project
        .invoke(&["--dry-run"])
        .env("SAM_DEBUG_PORT", "7100")
        .success_json();
    assert_eq!(plan["debug"]["ports"], serde_json::json!([7100]));
    // --config-env picks a section; local_invoke beats global.
    let plan = project.dry_run(&["--config-env", "prod"]);
    assert_eq!(env_var(&plan, "STAGE"), Some("prod"));
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("eu-central-1"));
    assert!(plan["debug"].is_null());
}

#[test]
fn test_samconfig_yaml_and_config_file() {
    let project = Project::fixture("samconfig-project");
    let plan = project.dry_run(&["--config-file", "samconfig-alt.yaml"]);
    assert_eq!(env_var(&plan, "STAGE"), Some("from-yaml"));
    assert_eq!(
        env_var(&plan, "COLOR"),
        Some("green,yellow"),
        "lists in tables are joined with commas"
    );
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("ap-southeast-2"));
    project
        .invoke(&["--config-file", "nope.toml", "--dry-run"])
        .fails(1, &["nope.toml does not exist"]);
}

#[test]
fn test_samconfig_is_found_next_to_an_explicit_template() {
    let project = Project::fixture("samconfig-project");
    let sub = project.path().join("src");
    let plan = crate::util::Run::new(&sub)
        .args(["local", "invoke", "-t", "../template.yaml", "--dry-run"])
        .success_json();
    assert_eq!(env_var(&plan, "STAGE"), Some("from-samconfig"));
    // Through SAM_TEMPLATE_FILE the samconfig of the current directory is used (none here).
    let plan = crate::util::Run::new(&sub)
        .args(["local", "invoke", "--dry-run"])
        .env("SAM_TEMPLATE_FILE", "../template.yaml")
        .success_json();
    assert_eq!(env_var(&plan, "STAGE"), Some("dev"));
}

#[test]
fn test_samconfig_negated_flags_nulls_and_duplicate_template_keys() {
    let project = Project::fixture("samconfig-project").file(
        "samconfig.toml",
        "version = 0.1\n[default.global.parameters]\ntemplate = \"missing.yaml\"\n[default.local_invoke.parameters]\ntemplate_file = \"template.yaml\"\nmount_symlinks = true\n",
    );
    // template_file wins over template; the command line's --no-mount-symlinks beats samconfig.
    assert_eq!(project.dry_run(&[])["mount_symlinks"], true);
    assert_eq!(
        project.dry_run(&["--no-mount-symlinks"])["mount_symlinks"],
        false
    );
    let project = Project::fixture("samconfig-project")
        .file(
            "samconfig.yaml",
            "version: 0.1\ndefault:\n  local_invoke:\n    parameters:\n      region:\n",
        )
        .file("samconfig.toml", "version = 0.1\n");
    let plan = project.dry_run(&["--config-file", "samconfig.yaml"]);
    assert_eq!(
        env_var(&plan, "AWS_REGION"),
        Some("us-east-1"),
        "a null value is no value"
    );
}

#[test]
fn test_samconfig_bad_value_names_the_file_and_key() {
    let project = Project::fixture("samconfig-project").file(
        "samconfig.toml",
        "version = 0.1\n[default.local_invoke.parameters]\ndebug_port = \"notaport\"\n",
    );
    project
        .invoke(&["--dry-run"])
        .fails(1, &["samconfig.toml", "`debug_port`", "notaport"]);
}

#[test]
fn test_samconfig_bad_files() {
    let project =
        Project::fixture("samconfig-project").file("samconfig.toml", "version = 0.1\n[default\n");
    project
        .invoke(&["--dry-run"])
        .fails(1, &["Error reading configuration", "samconfig.toml"]);
    let project = project.file(
        "samconfig.toml",
        "[default.global.parameters]\nregion = \"x\"\n",
    );
    project
        .invoke(&["--dry-run"])
        .fails(1, &["'version' key is not present"]);
    let project = project.file(
        "samconfig.toml",
        "version = 0.1\n[default.local_invoke.parameters]\nparameter_overrides = \"oops\"\n",
    );
    project
        .invoke(&["--dry-run"])
        .fails(2, &["oops is not a valid format"]);
}

#[test]
fn test_samconfig_save_params_round_trip() {
    let project = Project::fixture("hello-python");
    let out = project
        .invoke(&[
            "HelloWorldFunction",
            "--save-params",
            "--dry-run",
            "--parameter-overrides",
            "TableName=saved Stage=prod",
            "--skip-pull-image",
            "-d",
            "5858",
            "--region",
            "eu-north-1",
        ])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "Saved parameters to config file 'samconfig.toml' under environment 'default'"
        ),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(project.path().join("samconfig.toml")).unwrap();
    assert!(
        !text.contains("dry_run") && !text.contains("save_params"),
        "{text}"
    );
    // The saved values now apply without the options.
    let plan = project.dry_run(&["HelloWorldFunction"]);
    assert_eq!(env_var(&plan, "TABLE"), Some("saved"));
    assert_eq!(plan["memory_size"], 1024, "Stage=prod came back");
    assert_eq!(plan["skip_pull_image"], true);
    assert_eq!(plan["debug"]["ports"][0], 5858);
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("eu-north-1"));
}

#[test]
fn test_samconfig_debug_turns_on_debug_logging() {
    let project = Project::fixture("hello-python").file(
        "samconfig.toml",
        "version = 0.1\n[default.local_invoke.parameters]\ndebug = true\n",
    );
    let out = project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("INFO Invoking app.lambda_handler"),
        "timestamps and levels, as with --debug:\n{}",
        out.stderr
    );
    let quiet = Project::fixture("hello-python")
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .output();
    assert!(
        quiet.stderr.starts_with("Invoking app.lambda_handler"),
        "{}",
        quiet.stderr
    );
}
