//! Bad input: one clear `Error:` line naming the file, field or value; exit 1 (2 for usage).

use crate::util::Project;

fn function(props: &str) -> Project {
    Project::empty().file(
        "template.yaml",
        &format!(
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n{props}"
        ),
    )
}

#[test]
fn test_bad_input_missing_template() {
    let project = Project::empty();
    let expected = format!(
        "Template file not found at {}",
        project.path().join("template.yml").display()
    );
    project.invoke(&["--dry-run"]).fails(1, &[&expected]);
    project
        .invoke(&["-t", "nope.yaml", "--dry-run"])
        .fails(1, &["nope.yaml"]);
}

#[test]
fn test_bad_input_unparsable_template_has_line_and_column() {
    let project = Project::empty().file(
        "template.yaml",
        "Resources:\n  Fn:\n    Type: [unclosed\n    Properties: {}\n",
    );
    project
        .invoke(&["--dry-run"])
        .fails(1, &["Failed to parse template", "template.yaml", "line 4"]);
    let project = Project::empty().file("template.yaml", "Resources:\n  A: 1\n\tB: 2\n");
    project
        .invoke(&["--dry-run"])
        .fails(1, &["Failed to parse template", "line 2, column 6", "tab"]);
    let project = Project::empty().file("template.yaml", "- just\n- a list\n");
    project
        .invoke(&["--dry-run"])
        .fails(1, &["expected a mapping"]);
}

#[test]
fn test_bad_input_template_structure() {
    Project::empty()
        .file("template.yaml", "AWSTemplateFormatVersion: '2010-09-09'\n")
        .invoke(&["--dry-run"])
        .fails(
            1,
            &[
                "Invalid Serverless Application Specification document",
                "'Resources' section is required",
            ],
        );
    Project::empty()
        .file("template.yaml", "Globals:\n  Function:\n    Handlr: x\nResources:\n  F:\n    Type: AWS::Serverless::Function\n")
        .invoke(&["--dry-run"])
        .fails(1, &["'Handlr' is not a supported property", "template.yaml"]);
}

#[test]
fn test_bad_input_unknown_function_lists_known_ones() {
    Project::fixture("hello-python")
        .invoke(&["Nope", "--dry-run"])
        .fails(
            1,
            &[
                "Function Nope not found in template",
                "['HelloWorldFunction', 'ArmFunction']",
            ],
        );
    Project::fixture("hello-python")
        .invoke(&["bad name!", "--dry-run"])
        .fails(
            1,
            &["Value 'bad name!' at 'functionName' failed to satisfy constraint"],
        );
}

#[test]
fn test_bad_input_parameter_overrides() {
    let project = Project::fixture("hello-python");
    project
        .invoke(&["--parameter-overrides", "=x", "--dry-run"])
        .fails(2, &["=x is not a valid format"]);
    project
        .invoke(&["--parameter-overrides", "file://missing.yaml", "--dry-run"])
        .fails(1, &["missing.yaml"]);
    let project = project.file("p.json", "{}");
    project
        .invoke(&["--parameter-overrides", "file://p.json", "--dry-run"])
        .fails(1, &["p.json", ".toml, .yaml and .yml"]);
}

#[test]
fn test_bad_input_env_vars_files() {
    let project = Project::fixture("hello-python")
        .file("broken.json", "{\"Parameters\": {\n")
        .file("list.json", "[1, 2]")
        .file(
            "shape.json",
            "{\"Parameters\": {\"A\": 1}, \"HelloWorldFunction\": \"TABLE=x\"}",
        );
    project
        .invoke(&["-n", "broken.json", "--dry-run"])
        .fails(1, &["broken.json", "not in valid JSON"]);
    project
        .invoke(&["-n", "list.json", "--dry-run"])
        .fails(1, &["list.json", "incorrect format"]);
    project
        .invoke(&["-n", "shape.json", "--dry-run"])
        .fails(1, &["shape.json", "\"TABLE=x\" in incorrect format"]);
}

#[test]
fn test_bad_input_event_file_missing() {
    Project::fixture("hello-python")
        .invoke(&[
            "HelloWorldFunction",
            "-e",
            "missing-event.json",
            "--dry-run",
        ])
        .fails(
            1,
            &[
                "cannot read event file",
                "missing-event.json",
                "No such file",
            ],
        );
}

#[test]
fn test_bad_input_runtime() {
    function("      Handler: h\n      Runtime: cobol85\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Unsupported Lambda runtime: cobol85", "Fn"]);
    let out = function("      Handler: h\n      Runtime: python2.7\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Unsupported Lambda runtime: python2.7"]);
    assert!(
        out.stderr
            .contains("python2.7 is no longer supported by AWS Lambda"),
        "{}",
        out.stderr
    );
    function("      Handler: h\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Fn", "Runtime is required"]);
}

#[test]
fn test_bad_input_handler_missing() {
    function("      Runtime: python3.12\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Could not find handler for function: Fn"]);
    // Only the invoked function is checked: a sibling without Handler does not block it.
    let project = Project::empty().file(
        "template.yaml",
        "Resources:\n  Good:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h\n      Runtime: python3.12\n  NoHandler:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n",
    );
    assert_eq!(project.dry_run(&["Good"])["function"], "Good");
}

#[test]
fn test_bad_input_code_uri_missing_on_disk() {
    function("      Handler: h\n      Runtime: python3.12\n      CodeUri: build/missing\n")
        .invoke(&["--dry-run"])
        .fails(
            1,
            &[
                "Local code path",
                "build/missing",
                "function Fn",
                "sam build",
            ],
        );
    function("      Handler: h\n      Runtime: python3.12\n      CodeUri: s3://bucket/code.zip\n")
        .invoke(&["Fn", "--dry-run"])
        .fails(1, &["Function Fn not found"]);
    function("      Handler: h\n      Runtime: python3.12\n      CodeUri: notes.txt\n")
        .file("notes.txt", "x")
        .invoke(&["--dry-run"])
        .fails(1, &["notes.txt", "not a .zip or .jar"]);
}

#[test]
fn test_bad_input_numbers() {
    function("      Handler: h\n      Runtime: python3.12\n      Timeout: soon\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Invalid Number for Timeout: soon"]);
    function("      Handler: h\n      Runtime: python3.12\n      MemorySize: [1]\n")
        .invoke(&["--dry-run"])
        .fails(1, &["Invalid Number for MemorySize"]);
    function("      Handler: h\n      Runtime: python3.12\n      PackageType: Tarball\n")
        .invoke(&["--dry-run"])
        .fails(
            1,
            &["Invalid PackageType `Tarball`, PackageType needs to be one of [Zip, Image]"],
        );
}

#[test]
fn test_bad_input_debugger_path() {
    let project = Project::fixture("hello-python").file("afile", "x");
    project
        .invoke(&[
            "HelloWorldFunction",
            "-d",
            "5858",
            "--debugger-path",
            "nodir",
            "--dry-run",
        ])
        .fails(1, &["'nodir' could not be found."]);
    project
        .invoke(&[
            "HelloWorldFunction",
            "-d",
            "5858",
            "--debugger-path",
            "afile",
            "--dry-run",
        ])
        .fails(1, &["'afile' should be a directory"]);
    // Without a debug port the path has no effect (as SAM).
    assert!(
        project.dry_run(&["HelloWorldFunction", "--debugger-path", "nodir"])["debug"].is_null()
    );
}

#[test]
fn test_bad_input_nested_stack_errors_name_the_stack() {
    let project = Project::empty()
        .file("template.yaml", "Resources:\n  Child:\n    Type: AWS::Serverless::Application\n    Properties:\n      Location: child.yaml\n")
        .file("child.yaml", "Resources: {oops\n");
    project
        .invoke(&["--dry-run"])
        .fails(1, &["nested stack Child", "child.yaml"]);
    let project = Project::empty().file(
        "template.yaml",
        "Resources:\n  Self:\n    Type: AWS::Serverless::Application\n    Properties:\n      Location: template.yaml\n",
    );
    project
        .invoke(&["--dry-run"])
        .fails(1, &["nested stacks go more than"]);
}

#[test]
fn test_bad_input_function_for_another_cpu_without_an_emulator() {
    let foreign = match std::env::consts::ARCH {
        "x86_64" => ("arm64", "qemu-aarch64"),
        _ => ("x86_64", "qemu-x86_64"),
    };
    if std::path::Path::new("/proc/sys/fs/binfmt_misc")
        .join(foreign.1)
        .exists()
    {
        eprintln!("skipped: this host can emulate {}", foreign.0);
        return;
    }
    let project = Project::fixture("hello-python").file(
        "template.yaml",
        &format!(
            "Resources:\n  Foreign:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.lambda_handler\n      CodeUri: hello_world/\n      Architectures: [{}]\n",
            foreign.0
        ),
    );
    // Said before anything is pulled (no registry is reachable here).
    project.invoke(&["Foreign", "--no-event"]).fails(
        1,
        &[
            "function Foreign: built for",
            "has no",
            "emulator registered",
            "qemu-user-static",
        ],
    );
}
