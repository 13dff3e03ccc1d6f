//! The function's environment: SAM's injected variables, template values, the shell, `--env-vars`.

use crate::util::{Project, env_of, env_var};

#[test]
fn test_environment_injected_variables_in_order() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&["HelloWorldFunction"]);
    let names: Vec<String> = env_of(&plan).into_iter().map(|(k, _)| k).take(16).collect();
    assert_eq!(
        names,
        [
            "AWS_SAM_LOCAL",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_TIMEOUT",
            "AWS_LAMBDA_FUNCTION_HANDLER",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCOUNT_ID",
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            "AWS_LAMBDA_RUNTIME_API",
            "_HANDLER",
        ]
    );
    let env = |name| env_var(&plan, name).unwrap();
    assert_eq!(env("AWS_SAM_LOCAL"), "true");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST");
    assert_eq!(
        env("AWS_LAMBDA_LOG_GROUP_NAME"),
        "/aws/lambda/HelloWorldFunction"
    );
    assert_eq!(env("AWS_ACCESS_KEY_ID"), "defaultkey");
    assert_eq!(env("AWS_SECRET_ACCESS_KEY"), "defaultsecret");
    assert_eq!(env("AWS_REGION"), "us-east-1");
    assert_eq!(env("AWS_LAMBDA_RUNTIME_API"), "127.0.0.1:9001");
    assert!(env_var(&plan, "AWS_SESSION_TOKEN").is_none());
}

#[test]
fn test_environment_credentials_and_region_from_shell() {
    let project = Project::fixture("hello-python");
    let plan = project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_SESSION_TOKEN", "token")
        .env("AWS_DEFAULT_REGION", "sa-east-1")
        .env("AWS_REGION", "ignored-when-default-region-set")
        .success_json();
    assert_eq!(env_var(&plan, "AWS_ACCESS_KEY_ID"), Some("AKIDEXAMPLE"));
    // --dry-run does not show secrets.
    assert_eq!(env_var(&plan, "AWS_SECRET_ACCESS_KEY"), Some("***"));
    assert_eq!(env_var(&plan, "AWS_SESSION_TOKEN"), Some("***"));
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("sa-east-1"));
}

#[test]
fn test_environment_precedence_template_shell_overrides() {
    let project = Project::fixture("hello-python");
    // The shell overrides a declared variable (SAM does this); an undeclared one is not leaked.
    let plan = project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .env("STAGE", "from-shell")
        .env("NOT_DECLARED", "x")
        .success_json();
    assert_eq!(env_var(&plan, "STAGE"), Some("from-shell"));
    assert_eq!(env_var(&plan, "NOT_DECLARED"), None);

    // --env-vars beats the shell; the function block beats Parameters.
    let out = project
        .invoke(&["HelloWorldFunction", "--dry-run", "-n", "env.json"])
        .env("TABLE", "from-shell")
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(env_var(&plan, "TABLE"), Some("from-env-file"));
    assert_eq!(env_var(&plan, "SHARED"), Some("from-env-file-global"));
    assert_eq!(
        env_var(&plan, "RETRIES"),
        Some("5"),
        "numbers become strings"
    );
    // lamina's fix: an override the template does not declare is passed, with a notice.
    assert_eq!(env_var(&plan, "EXTRA"), Some("not-declared"));
    assert!(
        out.stderr.contains("EXTRA") && out.stderr.contains("does not declare"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_environment_function_blocks_by_any_name() {
    let template = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      FunctionName: real-name\n      Handler: h\n      Runtime: python3.12\n      Environment:\n        Variables:\n          V: template\n";
    for key in ["Fn", "real-name"] {
        let project = Project::empty().file("template.yaml", template).file(
            "env.json",
            &format!(r#"{{"{key}": {{"V": "block-{key}"}}, "Other": {{"V": "no"}}}}"#),
        );
        let plan = project.dry_run(&["-n", "env.json"]);
        assert_eq!(env_var(&plan, "V"), Some(format!("block-{key}").as_str()));
    }
    // An empty block falls through to the next name.
    let project = Project::empty()
        .file("template.yaml", template)
        .file("env.json", r#"{"Fn": {}, "real-name": {"V": "second"}}"#);
    assert_eq!(
        env_var(&project.dry_run(&["-n", "env.json"]), "V"),
        Some("second")
    );
}

#[test]
fn test_environment_dotenv_file() {
    let project = Project::fixture("hello-python").file(
        ".env.local",
        "TABLE=dotenv-table\nSTAGE=\"quoted stage\"\nexport SHARED=a b # comment\nBARE\n",
    );
    let plan = project.dry_run(&["HelloWorldFunction", "-n", ".env.local"]);
    assert_eq!(env_var(&plan, "TABLE"), Some("dotenv-table"));
    assert_eq!(env_var(&plan, "STAGE"), Some("quoted stage"));
    assert_eq!(env_var(&plan, "SHARED"), Some("a b"));
    assert_eq!(env_var(&plan, "BARE"), Some(""));
}

#[test]
fn test_environment_container_env_vars_only_when_debugging() {
    let project = Project::fixture("hello-python").file(
        "cenv.json",
        r#"{"Parameters": {"DEBUG_ONLY": "1", "STAGE": "debug"}}"#,
    );
    let plan = project.dry_run(&["HelloWorldFunction", "--container-env-vars", "cenv.json"]);
    assert_eq!(env_var(&plan, "DEBUG_ONLY"), None);
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--container-env-vars",
        "cenv.json",
        "-d",
        "5678",
    ]);
    assert_eq!(env_var(&plan, "DEBUG_ONLY"), Some("1"));
    assert_eq!(env_var(&plan, "STAGE"), Some("debug"));
    assert_eq!(env_var(&plan, "AWS_LAMBDA_FUNCTION_TIMEOUT"), Some("36000"));
}

#[test]
fn test_environment_debug_mode_per_runtime() {
    let project = Project::empty().file(
        "template.yaml",
        "Resources:\n  Node:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: index.handler\n      Runtime: nodejs20.x\n  Java:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: a.B::handle\n      Runtime: java21\n",
    );
    let plan = project.dry_run(&["Node", "-d", "9229"]);
    assert_eq!(
        env_var(&plan, "NODE_OPTIONS"),
        Some("--inspect-brk=0.0.0.0:9229 --max-http-header-size 81920")
    );
    assert_eq!(
        env_var(&plan, "AWS_EXECUTION_ENV"),
        Some("AWS_Lambda_nodejs20.x")
    );
    assert_eq!(
        plan["debug"]["settings"]["command"][0],
        "/var/lang/bin/node"
    );
    let plan = project.dry_run(&["Java", "-d", "5005"]);
    assert!(
        env_var(&plan, "_JAVA_OPTIONS")
            .unwrap()
            .contains("address=*:5005")
    );
    // Without a debug port nothing changes.
    assert_eq!(env_var(&project.dry_run(&["Node"]), "NODE_OPTIONS"), None);
}

/// A project whose HOME has AWS shared config and credentials files.
fn project_with_aws_files() -> Project {
    Project::fixture("hello-python")
        .file(
            ".test-home/.aws/credentials",
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = default-secret\n\n\
             [dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = dev-secret\naws_session_token = dev-token\n",
        )
        .file(
            ".test-home/.aws/config",
            "[default]\nregion = ap-northeast-1\n\n[profile dev]\nregion = eu-central-1\n\n\
             [profile tool]\nregion = ca-central-1\ncredential_process = /bin/sh -c \"printf '{\\\"Version\\\": 1, \\\"AccessKeyId\\\": \\\"AKIDPROCESS\\\", \\\"SecretAccessKey\\\": \\\"process-secret\\\"}'\"\n\n\
             [profile broken]\ncredential_process = /bin/false\n",
        )
}

#[test]
fn test_environment_profile_credentials_and_region() {
    let project = project_with_aws_files();
    let plan = |args: &[&str], vars: &[(&str, &str)]| {
        let mut run = project.invoke(&[&["HelloWorldFunction", "--dry-run"], args].concat());
        for (k, v) in vars {
            run = run.env(k, v);
        }
        let plan = run.success_json();
        let get = |name| env_var(&plan, name).map(str::to_string);
        (
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SESSION_TOKEN"),
            get("AWS_REGION"),
        )
    };
    let some = |s: &str| Some(s.to_string());
    // The default profile, its region.
    assert_eq!(
        plan(&[], &[]),
        (some("AKIDDEFAULT"), None, some("ap-northeast-1"))
    );
    // --profile: its keys, token and region.
    assert_eq!(
        plan(&["--profile", "dev"], &[]),
        (some("AKIDDEV"), some("***"), some("eu-central-1"))
    );
    // AWS_PROFILE selects it too; --region and AWS_DEFAULT_REGION beat the profile's region.
    assert_eq!(
        plan(
            &[],
            &[("AWS_PROFILE", "dev"), ("AWS_DEFAULT_REGION", "us-west-2")]
        ),
        (some("AKIDDEV"), some("***"), some("us-west-2"))
    );
    assert_eq!(
        plan(&["--profile", "dev", "--region", "sa-east-1"], &[]).2,
        some("sa-east-1")
    );
    // Shell keys beat the files, unless a profile is named explicitly (botocore).
    let shell = [
        ("AWS_ACCESS_KEY_ID", "AKIDSHELL"),
        ("AWS_SECRET_ACCESS_KEY", "shell-secret"),
    ];
    assert_eq!(plan(&[], &shell).0, some("AKIDSHELL"));
    assert_eq!(plan(&["--profile", "dev"], &shell).0, some("AKIDDEV"));
    // botocore reads AWS_DEFAULT_PROFILE before AWS_PROFILE.
    assert_eq!(
        plan(
            &[],
            &[("AWS_PROFILE", "dev"), ("AWS_DEFAULT_PROFILE", "tool")]
        )
        .0,
        some("AKIDPROCESS")
    );
    // A credential_process profile runs the process (through the AWS SDK's chain).
    assert_eq!(
        plan(&["--profile", "tool"], &[]),
        (some("AKIDPROCESS"), None, some("ca-central-1"))
    );
}

#[test]
fn test_environment_unknown_profile_is_an_error() {
    let project = project_with_aws_files();
    project
        .invoke(&["HelloWorldFunction", "--dry-run", "--profile", "nope"])
        .fails(
            1,
            &[
                "The config profile (nope) could not be found",
                ".aws/config",
            ],
        );
    // AWS_PROFILE is checked the same way, also when there are no files at all.
    project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env("AWS_PROFILE", "dev")
        .fails(
            1,
            &[
                "The config profile (dev) could not be found",
                "/nonexistent/config",
            ],
        );
}

#[test]
fn test_environment_failing_credentials_do_not_stop_a_local_run() {
    // An expired SSO token or a failing credential_process: the function runs with the stand-ins,
    // and lamina says why in one line.
    let project = project_with_aws_files();
    let out = project
        .invoke(&["HelloWorldFunction", "--dry-run", "--profile", "broken"])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(env_var(&plan, "AWS_ACCESS_KEY_ID"), Some("defaultkey"));
    assert!(
        out.stderr
            .contains("Notice: cannot get AWS credentials for profile broken"),
        "{}",
        out.stderr
    );
}
