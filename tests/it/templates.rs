//! The template corpus (`tests/fixtures/projects`): discovery, Globals, intrinsics, nested stacks,
//! layers, image functions and function identifiers, observed through `--dry-run`.

use serde_json::json;

use crate::util::{Project, env_var};

#[test]
fn test_templates_hello_python_resolves_like_sam() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--parameter-overrides",
        "TableName=orders",
    ]);
    assert_eq!(plan["function"], "HelloWorldFunction");
    assert_eq!(plan["runtime"], "python3.12", "Runtime comes from Globals");
    assert_eq!(plan["handler"], "app.lambda_handler");
    assert_eq!(plan["package_type"], "Zip");
    assert_eq!(plan["architecture"], "x86_64");
    assert_eq!(plan["timeout"], 10, "Timeout from Globals");
    // The function's `!If` replaces the Globals value; false gives AWS::NoValue, so Lambda's default.
    assert_eq!(plan["memory_size"], 128);
    assert_eq!(plan["image"], "public.ecr.aws/lambda/python:3.12");
    assert_eq!(
        plan["code_path"],
        project.path().join("hello_world").to_str().unwrap()
    );
    assert_eq!(plan["layers"], json!([]));
    assert_eq!(plan["event"], "{}");
    let env = |name| env_var(&plan, name).unwrap_or_else(|| panic!("{name} not set"));
    assert_eq!(env("STAGE"), "dev");
    assert_eq!(
        env("SHARED"),
        "from-function",
        "the function's own variable beats Globals"
    );
    assert_eq!(env("POWERTOOLS_SERVICE_NAME"), "hello");
    assert_eq!(env("TABLE"), "orders");
    assert_eq!(
        env("TABLE_ARN"),
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
    );
    assert_eq!(env("LOG_LEVEL"), "DEBUG");
    assert_eq!(env("FIRST_SUBNET"), "subnet-a");
    assert_eq!(env("JOINED"), "a|b|dev");
    assert_eq!(env("ENCODED"), "aGVsbG8=");
    assert_eq!(
        env("SELF_ARN"),
        "arn:aws:lambda:us-east-1:123456789012:function:HelloWorldFunction"
    );
    assert_eq!(
        env("IMPORTED"),
        "",
        "an unresolvable intrinsic becomes an empty string"
    );
    assert_eq!(env("DEBUG_ENABLED"), "true", "YAML 1.1 `yes` is a boolean");
    assert_eq!(env("RETRIES"), "3");
    assert_eq!(env("RATIO"), "1.5");
    assert_eq!(env("IS_NOT_PROD"), "true");
    assert_eq!(env("ESCAPED"), "${NotAVariable}");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "128");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_TIMEOUT"), "10");
}

#[test]
fn test_templates_conditions_follow_parameters() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--parameter-overrides",
        "Stage=prod TableName=t",
    ]);
    assert_eq!(plan["memory_size"], 1024);
    assert_eq!(env_var(&plan, "LOG_LEVEL"), Some("WARN"));
    assert_eq!(env_var(&plan, "IS_NOT_PROD"), Some("false"));
    // Long form, and a parameter without default or override resolves to its own name (SAM).
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--parameter-overrides",
        "ParameterKey=Stage,ParameterValue=prod",
    ]);
    assert_eq!(plan["memory_size"], 1024);
    assert_eq!(env_var(&plan, "TABLE"), Some("TableName"));
}

#[test]
fn test_templates_region_flows_into_intrinsics_and_env() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&["HelloWorldFunction", "--region", "eu-west-2"]);
    assert_eq!(
        env_var(&plan, "TABLE_ARN"),
        Some("arn:aws:dynamodb:eu-west-2:123456789012:table/TableName")
    );
    assert_eq!(env_var(&plan, "AWS_REGION"), Some("eu-west-2"));
    assert_eq!(env_var(&plan, "AWS_DEFAULT_REGION"), Some("eu-west-2"));
}

#[test]
fn test_templates_function_properties() {
    let project = Project::fixture("hello-python");
    // By FunctionName (resolved through !Sub), not only by logical id.
    let plan = project.dry_run(&["dev-arm-function"]);
    assert_eq!(plan["function"], "ArmFunction");
    assert_eq!(plan["architecture"], "arm64");
    assert_eq!(plan["timeout"], 30);
    assert_eq!(plan["ephemeral_storage"], 1024);
    assert_eq!(env_var(&plan, "AWS_LAMBDA_LOG_FORMAT"), Some("JSON"));
    assert_eq!(env_var(&plan, "AWS_LAMBDA_LOG_LEVEL"), Some("INFO"));
    assert_eq!(
        env_var(&plan, "AWS_LAMBDA_LOG_GROUP_NAME"),
        Some("/custom/group")
    );
    assert_eq!(
        env_var(&plan, "AWS_LAMBDA_FUNCTION_NAME"),
        Some("ArmFunction"),
        "the logical id, as SAM"
    );
    // ARN forms name the same function.
    for id in [
        "arn:aws:lambda:us-east-1:123456789012:function:dev-arm-function",
        "arn:aws:lambda:us-east-1:123456789012:function:dev-arm-function:live",
        "123456789012:function:dev-arm-function",
        "dev-arm-function:live",
    ] {
        assert_eq!(project.dry_run(&[id])["function"], "ArmFunction", "{id}");
    }
}

#[test]
fn test_templates_discovery_prefers_sam_build_output() {
    let project = Project::fixture("built");
    let plan = project.dry_run(&[]);
    assert_eq!(
        plan["template"],
        project
            .path()
            .join(".aws-sam/build/template.yaml")
            .to_str()
            .unwrap()
    );
    assert_eq!(
        plan["code_path"],
        project
            .path()
            .join(".aws-sam/build/HelloWorldFunction")
            .to_str()
            .unwrap()
    );
    let plan = project.dry_run(&["-t", "template.yaml"]);
    assert_eq!(
        plan["code_path"],
        project.path().join("hello_world").to_str().unwrap()
    );
    // From a subdirectory, -t is relative to the current directory.
    let sub = project.path().join("hello_world");
    let plan = crate::util::Run::new(&sub)
        .args(["local", "invoke", "-t", "../template.yaml", "--dry-run"])
        .success_json();
    assert_eq!(plan["code_path"], sub.to_str().unwrap());
}

#[test]
fn test_templates_discovery_order_yaml_yml_json() {
    let body = |rt: &str| {
        format!(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: a.b\n      Runtime: {rt}\n"
        )
    };
    let project = Project::empty().file("template.json", r#"{"Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "a.b", "Runtime": "python3.9"}}}}"#);
    assert_eq!(project.dry_run(&[])["runtime"], "python3.9");
    let project = project.file("template.yml", &body("python3.10"));
    assert_eq!(project.dry_run(&[])["runtime"], "python3.10");
    let project = project.file("template.yaml", &body("python3.11"));
    assert_eq!(project.dry_run(&[])["runtime"], "python3.11");
}

#[test]
fn test_templates_json_template_zip_and_inline_code() {
    let project = Project::fixture("json-template");
    let out = project.invoke(&["ZipFunction", "--dry-run"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("S3Function"),
        "S3 code is skipped with a warning: {}",
        out.stderr
    );
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["memory_size"], 512, "a Number parameter default");
    assert_eq!(plan["timeout"], 15, "a string Timeout is read like int()");
    assert_eq!(env_var(&plan, "FROM_JSON"), Some("a-b"));
    assert_eq!(
        plan["code_archive"],
        project.path().join("function.zip").to_str().unwrap()
    );
    let code_path = plan["code_path"].as_str().unwrap();
    assert!(
        code_path.contains("/code-v1/"),
        "zip code is unpacked into the cache: {code_path}"
    );
    // The cache key is the zip's sha256: a different zip gets a different directory.
    std::fs::write(project.path().join("function.zip"), b"PK\x05\x06not really").unwrap();
    let other = project.dry_run(&["ZipFunction"]);
    assert_ne!(other["code_path"], plan["code_path"]);

    let inline = project.dry_run(&["InlineFunction"]);
    assert!(
        inline["code_path"]
            .as_str()
            .unwrap()
            .contains("/inline-v1/")
    );
    project.invoke(&["S3Function", "--dry-run"]).fails(
        1,
        &["S3Function not found", "ZipFunction", "InlineFunction"],
    );
}

#[test]
fn test_templates_nested_stacks() {
    let project = Project::fixture("nested");
    let plan = project.dry_run(&["ChildApp/ChildFunction"]);
    assert_eq!(plan["full_path"], "ChildApp/ChildFunction");
    assert_eq!(plan["function"], "ChildFunction");
    assert_eq!(
        plan["code_path"],
        project.path().join("src").to_str().unwrap(),
        "paths are relative to the child template"
    );
    assert_eq!(
        env_var(&plan, "CHILD_STAGE"),
        Some("dev-child"),
        "the child gets the parent's resolved Parameters"
    );
    let plan = project.dry_run(&[
        "ChildApp/ChildFunction",
        "--parameter-overrides",
        "Stage=qa",
    ]);
    assert_eq!(env_var(&plan, "CHILD_STAGE"), Some("qa-child"));
    // A bare logical id finds the nested function too.
    assert_eq!(
        project.dry_run(&["ChildFunction"])["full_path"],
        "ChildApp/ChildFunction"
    );
    // CloudFormation::Stack with file:// and a plain Lambda function.
    let plan = project.dry_run(&["CfnChild/SharedName"]);
    assert_eq!(plan["runtime"], "nodejs22.x");
    assert_eq!(
        plan["code_path"],
        project.path().join("src").to_str().unwrap()
    );
    // Two functions match `SharedName`: the first by full path wins, with a warning listing both.
    let out = project.invoke(&["SharedName", "--dry-run"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["full_path"], "CfnChild/SharedName");
    assert!(
        out.stderr
            .contains("Multiple functions found with keyword SharedName!"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ChildApp/SharedName"), "{}", out.stderr);
    // FunctionName lookup inside a nested stack.
    assert_eq!(
        project.dry_run(&["shared-name"])["full_path"],
        "ChildApp/SharedName"
    );
    // Without an identifier, every function is listed.
    project.invoke(&["--dry-run"]).fails(
        1,
        &["You must provide a function logical ID", "'RootFunction', 'ChildApp/ChildFunction', 'ChildApp/SharedName', 'CfnChild/SharedName'"],
    );
}

#[test]
fn test_templates_layers() {
    let project = Project::fixture("layers");
    let out = project.invoke(&["LayeredFunction", "--dry-run"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let root = project.path();
    let local = |name: &str, dir: &str| json!({"kind": "local", "name": name, "logical_id": name, "path": root.join(dir).to_str().unwrap()});
    assert_eq!(
        plan["layers"],
        json!([
            local("CommonLayer", "layers/common"),
            local("SharedLayer", "layers/shared"),
            local("SharedLayer", "layers/shared"),
            {"kind": "arn", "arn": "arn:aws:lambda:us-east-1:123456789012:layer:published:7",
             "name": "published-7-f3dd0addce", "version": 7},
        ]),
        "Globals layers first, then the function's, in order; the S3 layer is skipped"
    );
    assert!(
        out.stderr.contains("S3Layer"),
        "the S3 layer is skipped with a warning: {}",
        out.stderr
    );
    project.invoke(&["BadArnFunction", "--dry-run"]).fails(
        1,
        &["arn:aws:lambda:us-east-1:123456789012:layer:published is an Invalid Layer Arn"],
    );
    project
        .invoke(&["BadRefFunction", "--dry-run"])
        .fails(1, &["MissingLayer", "Layer References need to be of type"]);
    // A layer name outside AWS's pattern could leave the layer cache: refused.
    let escaping = Project::empty()
        .file(
            "template.yaml",
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: a.h\n      CodeUri: .\n      Layers: ['arn:aws:lambda:us-east-1:1:layer:../../x:1']\n",
        );
    escaping
        .invoke(&["F", "--dry-run"])
        .fails(1, &["layer:../../x:1 is an Invalid Layer Arn"]);
    // A Ref to a function resolves to its logical id, which is then not a layer ARN (as SAM).
    project
        .invoke(&["RefToFunction", "--dry-run"])
        .fails(1, &["LayeredFunction is an Invalid Layer Arn"]);
}

#[test]
fn test_templates_missing_local_layer_is_an_error() {
    let project = Project::fixture("layers");
    std::fs::remove_dir_all(project.path().join("layers/shared")).unwrap();
    project.invoke(&["LayeredFunction", "--dry-run"]).fails(
        1,
        &[
            "Local layer path",
            "layers/shared",
            "SharedLayer",
            "LayeredFunction",
        ],
    );
}

#[test]
fn test_templates_cdk_output() {
    let project = Project::fixture("cdk");
    let plan = project.dry_run(&["-t", "cdk.out/CdkStack.template.json", "HelloHandler"]);
    assert_eq!(plan["function"], "HelloHandler2E4FBA4D");
    assert_eq!(
        plan["full_path"], "HelloHandler",
        "the construct id from aws:cdk:path"
    );
    assert_eq!(
        plan["code_path"],
        project
            .path()
            .join("cdk.out/asset.0a1b2c3d")
            .to_str()
            .unwrap()
    );
    let plan = project.dry_run(&[
        "-t",
        "cdk.out/CdkStack.template.json",
        "HelloHandler2E4FBA4D",
    ]);
    assert_eq!(plan["full_path"], "HelloHandler");
}

#[test]
fn test_templates_image_functions() {
    let project = Project::fixture("image-functions");
    let plan = project.dry_run(&["ImageFunction"]);
    assert_eq!(plan["package_type"], "Image");
    assert_eq!(plan["image"], "public.ecr.aws/lambda/python:3.12");
    assert_eq!(plan["runtime"], json!(null));
    assert_eq!(plan["code_path"], json!(null));
    assert_eq!(
        plan["image_config"],
        json!({"command": ["app.lambda_handler"], "entry_point": ["/lambda-entrypoint.sh"], "working_directory": "/var/task"})
    );
    assert_eq!(
        env_var(&plan, "AWS_LAMBDA_FUNCTION_HANDLER"),
        Some("app.lambda_handler"),
        "Command[0], as SAM"
    );
    // lamina pulls from any registry, so ECR images are kept (SAM drops them).
    let plan = project.dry_run(&["PrivateImageFunction"]);
    assert_eq!(
        plan["image"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:v1"
    );
    project
        .invoke(&["NoUriFunction", "--dry-run"])
        .fails(1, &["ImageUri not provided for Function: NoUriFunction"]);
    // Images only Docker could build or hold: what to do instead.
    project.invoke(&["UnbuiltFunction", "--dry-run"]).fails(
        1,
        &[
            "function UnbuiltFunction: no ImageUri",
            "Metadata.DockerContext (./src)",
            "lamina runs images but does not build them",
            "oci:./image",
        ],
    );
    project.invoke(&["SamBuiltFunction", "--dry-run"]).fails(
        1,
        &[
            "ImageUri `sambuiltfunction:python3.12-v1`",
            "local Docker daemon",
            "does not build them",
        ],
    );
}

#[test]
fn test_templates_invoke_image_and_runtime_override() {
    let project = Project::fixture("hello-python");
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "--invoke-image",
        "reg/img:global",
        "--invoke-image",
        "HelloWorldFunction=reg/img:mine",
    ]);
    assert_eq!(plan["image"], "reg/img:mine", "a per-function image wins");
    let plan = project.dry_run(&[
        "ArmFunction",
        "--invoke-image",
        "reg/img:global",
        "--invoke-image",
        "HelloWorldFunction=reg/img:mine",
    ]);
    assert_eq!(plan["image"], "reg/img:global");
    let plan = project.dry_run(&[
        "HelloWorldFunction",
        "-ii",
        "reg/first",
        "-ii",
        "reg/second",
    ]);
    assert_eq!(
        plan["image"], "reg/second",
        "the last value wins, as in SAM's dict"
    );
    let plan = project.dry_run(&["HelloWorldFunction", "--runtime", "python3.14"]);
    assert_eq!(plan["runtime"], "python3.14");
    assert_eq!(plan["image"], "public.ecr.aws/lambda/python:3.14");
}

#[test]
fn test_templates_every_runtime_maps_to_its_image() {
    for (runtime, image) in [
        ("python3.8", "public.ecr.aws/lambda/python:3.8"),
        ("nodejs24.x", "public.ecr.aws/lambda/nodejs:24"),
        ("java8.al2", "public.ecr.aws/lambda/java:8.al2"),
        ("java17.al2023", "public.ecr.aws/lambda/java:17.al2023"),
        ("dotnet10", "public.ecr.aws/lambda/dotnet:10"),
        ("ruby4.0", "public.ecr.aws/lambda/ruby:4.0"),
        ("go1.x", "public.ecr.aws/lambda/go:1"),
        ("provided", "public.ecr.aws/lambda/provided:alami"),
        ("provided.al2023", "public.ecr.aws/lambda/provided:al2023"),
    ] {
        let project = Project::empty().file(
            "template.yaml",
            &format!("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h\n      Runtime: {runtime}\n"),
        );
        assert_eq!(project.dry_run(&[])["image"], image, "{runtime}");
    }
}

#[test]
fn test_templates_architecture_checks() {
    let t = |rt: &str, arch: &str| {
        Project::empty().file(
            "template.yaml",
            &format!("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h\n      Runtime: {rt}\n      Architectures: [{arch}]\n"),
        )
    };
    t("go1.x", "arm64").invoke(&["--dry-run"]).fails(
        1,
        &["Runtime go1.x is not supported on 'arm64' architecture"],
    );
    // --runtime changes the image, not the check (as SAM).
    t("go1.x", "arm64")
        .invoke(&["--dry-run", "--runtime", "provided.al2023"])
        .fails(1, &["Runtime go1.x is not supported"]);
    t("python3.12", "arm64, x86_64")
        .invoke(&["--dry-run"])
        .fails(1, &["Architectures should be a list of length 1"]);
    t("python3.12", "sparc")
        .invoke(&["--dry-run"])
        .fails(1, &["sparc", "Architectures"]);
    assert_eq!(
        t("python3.12", "arm64").dry_run(&[])["architecture"],
        "arm64"
    );
}

#[test]
fn test_templates_docker_volume_basedir() {
    let project = Project::fixture("hello-python").dir("elsewhere/hello_world");
    let plan = project.dry_run(&["HelloWorldFunction", "-v", "elsewhere"]);
    assert_eq!(
        plan["code_path"],
        project
            .path()
            .join("elsewhere/hello_world")
            .to_str()
            .unwrap()
    );
}

#[test]
fn test_templates_tenancy() {
    let project = Project::empty().file(
        "template.yaml",
        "Resources:\n  T:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h\n      Runtime: python3.12\n      TenancyConfig:\n        TenantIsolationMode: PER_TENANT\n  N:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h\n      Runtime: python3.12\n",
    );
    project
        .invoke(&["T", "--dry-run"])
        .fails(1, &["enabled with tenancy configuration"]);
    assert_eq!(
        project.dry_run(&["T", "--tenant-id", "acme"])["tenant_id"],
        "acme"
    );
    project
        .invoke(&["N", "--dry-run", "--tenant-id", "acme"])
        .fails(1, &["not enabled with tenancy configuration"]);
}

#[test]
fn test_templates_language_extensions_for_each() {
    let template = "\
Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
Parameters:
  Stages:
    Type: CommaDelimitedList
    Default: dev,prod
Globals:
  Function:
    Runtime: python3.12
    CodeUri: src/
Resources:
  Fn::ForEach::Functions:
    - Stage
    - !Ref Stages
    - ${Stage}Function:
        Type: AWS::Serverless::Function
        Properties:
          Handler: app.handler
          Environment:
            Variables:
              STAGE: !Ref Stage
              STAGE_COUNT: !Ref Count
              CONFIG:
                Fn::ToJsonString: {stage: !Ref Stage}
  Count:
    Type: AWS::SNS::Topic
";
    let project = Project::empty()
        .file("template.yaml", template)
        .file("src/app.py", "def handler(e, c):\n    return 1\n");
    let plan = project.dry_run(&["prodFunction", "--parameter-overrides", "Stages=dev,prod"]);
    assert_eq!(plan["function"], "prodFunction");
    assert_eq!(env_var(&plan, "STAGE"), Some("prod"));
    assert_eq!(env_var(&plan, "CONFIG"), Some(r#"{"stage":"prod"}"#));
    // The parameter decides the loop.
    let plan = project.dry_run(&["qaFunction", "--parameter-overrides", "Stages=qa"]);
    assert_eq!(env_var(&plan, "STAGE"), Some("qa"));
    // --no-language-extensions leaves the loop alone: nothing to invoke, and lamina says why.
    project
        .invoke(&["devFunction", "--no-language-extensions", "--dry-run"])
        .fails(1, &["devFunction"]);
    // Without the transform declared, --language-extensions (or SAM's variable) turns it on.
    let undeclared = Project::empty()
        .file(
            "template.yaml",
            &template.replace(
                "[AWS::LanguageExtensions, AWS::Serverless-2016-10-31]",
                "AWS::Serverless-2016-10-31",
            ),
        )
        .file("src/app.py", "");
    let out = undeclared.invoke(&["devFunction", "--dry-run"]).output();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("pass --language-extensions"),
        "{}",
        out.stderr
    );
    let plan = undeclared
        .invoke(&["devFunction", "--dry-run"])
        .env("SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS", "1")
        .success_json();
    assert_eq!(env_var(&plan, "STAGE"), Some("dev"));
    let plan = undeclared.dry_run(&["devFunction", "--language-extensions"]);
    assert_eq!(env_var(&plan, "STAGE"), Some("dev"));
}

#[test]
fn test_templates_aws_include_snippets() {
    let project = Project::empty()
        .file(
            "template.yaml",
            "\
Transform: AWS::Serverless-2016-10-31
Resources:
  Included:
    Fn::Transform:
      Name: AWS::Include
      Parameters:
        Location: snippets/function.yaml
",
        )
        .file(
            "snippets/function.yaml",
            "Type: AWS::Serverless::Function\nProperties:\n  Runtime: python3.12\n  Handler: app.handler\n  CodeUri: src\n  Environment:\n    Variables:\n      FROM: snippet\n",
        )
        .file("src/app.py", "");
    let plan = project.dry_run(&["Included"]);
    assert_eq!(env_var(&plan, "FROM"), Some("snippet"));
    // The snippet's paths count from the template, where it is put (as in CloudFormation).
    assert!(
        plan["code_path"].as_str().unwrap().ends_with(&format!(
            "{}/src",
            project.path().file_name().unwrap().to_str().unwrap()
        )),
        "{}",
        plan["code_path"]
    );
    std::fs::remove_file(project.path().join("snippets/function.yaml")).unwrap();
    project.invoke(&["Included", "--dry-run"]).fails(
        1,
        &[
            "Fn::Transform AWS::Include",
            "snippets/function.yaml does not exist",
        ],
    );
}

#[test]
fn test_templates_anchors_aliases_and_merge_keys() {
    // Anchors are read as PyYAML reads them (values and key order); what aliases copy is bounded
    // (see bad_input.rs), well above what real templates like this one use.
    let project = Project::empty().file(
        "template.yaml",
        "\
Parameters:
  Table: {Type: String, Default: orders}
Metadata:
  SharedEnv: &env
    STAGE: dev
    TABLE: !Ref Table
Resources:
  First:
    Type: AWS::Serverless::Function
    Properties: &props
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Timeout: 7
      Environment:
        Variables:
          EXTRA: x
          <<: *env
          STAGE: prod
  Second:
    Type: AWS::Serverless::Function
    Properties:
      <<: *props
      Handler: other.handler
",
    );
    for (function, handler) in [("First", "app.handler"), ("Second", "other.handler")] {
        let plan = project.dry_run(&[function]);
        assert_eq!(plan["handler"], handler);
        assert_eq!(plan["timeout"], 7);
        let declared: Vec<(String, String)> = crate::util::env_of(&plan)
            .into_iter()
            .filter(|(name, _)| ["STAGE", "TABLE", "EXTRA"].contains(&name.as_str()))
            .collect();
        // PyYAML: merged keys first, the mapping's own value replacing STAGE's in place.
        let want = [("STAGE", "prod"), ("TABLE", "orders"), ("EXTRA", "x")];
        assert_eq!(
            declared,
            want.map(|(k, v)| (k.to_string(), v.to_string())),
            "{function}"
        );
    }
}
