//! Bad input: one clear `Error:` line naming the file, field or value; exit 1 (2 for usage).

use std::path::{Path, PathBuf};

use crate::sandbox::{Invoke, LambdaApi, sandbox_env};
use crate::util::{Outcome, Project};

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
        .fails(1, &["broken.json", "not valid JSON", "line 2 column 0"]);
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

/// The input-limit tests' memory bound for lamina itself.
const MAX_RSS_KIB: u64 = 100 * 1024;

fn assert_bounded(out: &Outcome) {
    assert!(
        out.peak_rss_kib < MAX_RSS_KIB,
        "lamina's peak RSS was {} KiB:\n{}",
        out.peak_rss_kib,
        out.stderr
    );
}

const FUNCTION: &str = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: app.h\n      Runtime: python3.12\n      CodeUri: .\n";

#[test]
fn test_bad_input_env_vars_truncated_json_is_not_a_dotenv_file() {
    // Once read as a `.env` file: the function got a variable named `{"HelloWorldFunction":`.
    let project = Project::fixture("hello-python")
        .file("env.json", "{\"HelloWorldFunction\": ")
        .file("spaced.json", "\n\n   {\"Parameters\": {\"A\": 1}\n");
    let out = project
        .invoke(&["HelloWorldFunction", "-n", "env.json", "--dry-run"])
        .fails(
            1,
            &[
                "Could not read environment variables overrides from file",
                "env.json",
                "not valid JSON: EOF while parsing a value at line 1 column 23",
            ],
        );
    assert!(
        !out.stderr.contains("HelloWorldFunction\":"),
        "{}",
        out.stderr
    );
    project
        .invoke(&["HelloWorldFunction", "-n", "spaced.json", "--dry-run"])
        .fails(1, &["spaced.json", "not valid JSON", "line 4 column 0"]);
    // A real `.env` file still works.
    let project = project.file("vars.env", "A=1\n");
    let plan = project.dry_run(&["HelloWorldFunction", "-n", "vars.env"]);
    assert_eq!(crate::util::env_var(&plan, "A"), Some("1"));
}

#[test]
fn test_bad_input_yaml_billion_laughs() {
    // 525 bytes: nine levels of nine aliases, 9^9 "lol"s if copied (3.2 GB of RSS before).
    let mut laughs =
        String::from("Metadata:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        laughs += &format!(
            "  {name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        );
    }
    let project = Project::empty().file("template.yaml", &format!("{FUNCTION}{laughs}"));
    let out = project.invoke(&["--dry-run"]).measure_rss().fails(
        1,
        &[
            "Failed to parse template",
            "template.yaml",
            "anchors and aliases expand to more than 100000 nodes or 10485760 bytes (lamina's limit",
        ],
    );
    assert_bounded(&out);
    // The same in a parameter file and a samconfig file.
    let project = project
        .file("template.yaml", FUNCTION)
        .file("params.yaml", &laughs);
    let out = project
        .invoke(&["--parameter-overrides", "file://params.yaml", "--dry-run"])
        .measure_rss()
        .fails(1, &["params.yaml", "anchors and aliases expand"]);
    assert_bounded(&out);
    let project = project.file("samconfig.yaml", &format!("version: 0.1\n{laughs}"));
    let out = project
        .invoke(&["--dry-run"])
        .measure_rss()
        .fails(1, &["samconfig.yaml", "anchors and aliases expand"]);
    assert_bounded(&out);
}

#[test]
fn test_bad_input_deep_nesting_in_every_syntax() {
    // 20,000 levels: a stack overflow (exit 134) before, even with --dry-run.
    let deep = 20_000;
    let block_map: String = (0..4_000)
        .map(|i| format!("{}k:\n", " ".repeat(i + 1)))
        .collect();
    let templates = [
        (
            "block sequences",
            "template.yaml",
            format!("{FUNCTION}Metadata:\n  X: \n    {}x\n", "- ".repeat(deep)),
        ),
        (
            "flow sequences",
            "template.yaml",
            format!(
                "{FUNCTION}Metadata:\n  X: {}{}\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
        (
            "flow mappings",
            "template.yaml",
            format!(
                "{FUNCTION}Metadata:\n  X: {}1{}\n",
                "{a: ".repeat(deep),
                "}".repeat(deep)
            ),
        ),
        (
            "explicit-key block mappings",
            "template.yaml",
            format!("{FUNCTION}Metadata:\n  X:\n    {}x\n", "? ".repeat(deep)),
        ),
        // Indentation grows with the depth: 4,000 levels are 8 MB, within the size limit.
        (
            "indented block mappings",
            "template.yaml",
            format!("{FUNCTION}Metadata:\n{block_map}"),
        ),
        (
            "JSON",
            "template.json",
            format!(
                "{{\"Resources\": {{\"Fn\": {{\"Type\": \"AWS::Serverless::Function\", \"Properties\": {{\"Handler\": \"app.h\", \"Runtime\": \"python3.12\", \"CodeUri\": \".\"}}}}}}, \"Metadata\": {}{}}}",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
    ];
    for (syntax, name, text) in templates {
        let project = Project::empty().file(name, &text);
        let out = project.invoke(&["--dry-run"]).measure_rss().output();
        assert_eq!(out.code, 1, "{syntax}: {}", out.stderr);
        assert!(
            out.stderr.contains("Failed to parse template")
                && out.stderr.contains(name)
                && out
                    .stderr
                    .contains("nested more than 128 levels deep (lamina's limit)"),
            "{syntax}: {}",
            out.stderr
        );
        assert_bounded(&out);
    }
    // 128 levels are read, and every later step copes with them.
    let ok = format!(
        "{FUNCTION}      Tags: {}x{}\n",
        "[".repeat(124),
        "]".repeat(124)
    );
    Project::empty().file("template.yaml", &ok).dry_run(&[]);

    // The other files lamina parses.
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let project = Project::fixture("hello-python")
        .file(
            "env.json",
            &format!("{{\"Parameters\": {{\"A\": {}}}}}", nest(deep)),
        )
        .file("params.yaml", &format!("A:\n  {}x\n", "- ".repeat(deep)))
        .file("params.toml", &format!("A = {}\n", nest(deep)))
        // The toml crate allows 80 levels of each kind; together they pass lamina's limit.
        .file(
            "dotted.toml",
            &format!(
                "[{}]\n{} = {}\n",
                vec!["t"; 79].join("."),
                vec!["k"; 79].join("."),
                nest(60)
            ),
        )
        .file("deep-event.json", &nest(deep));
    project
        .invoke(&["HelloWorldFunction", "-n", "env.json", "--dry-run"])
        .fails(
            1,
            &[
                "env.json",
                "not valid JSON: recursion limit exceeded at line 1",
            ],
        );
    project
        .invoke(&[
            "HelloWorldFunction",
            "--parameter-overrides",
            "file://params.yaml",
            "--dry-run",
        ])
        .fails(1, &["params.yaml", "nested more than 128 levels deep"]);
    project
        .invoke(&[
            "HelloWorldFunction",
            "--parameter-overrides",
            "file://params.toml",
            "--dry-run",
        ])
        .fails(
            1,
            &[
                "params.toml",
                "line 1, column 85: nested more than 80 levels deep",
            ],
        );
    project
        .invoke(&[
            "HelloWorldFunction",
            "--parameter-overrides",
            "file://dotted.toml",
            "--dry-run",
        ])
        .fails(
            1,
            &[
                "dotted.toml",
                "nested 218 levels deep, more than 128 (lamina's limit)",
            ],
        );
    // The event is posted as it is, never parsed by lamina: its depth is the function's business.
    let plan = project.dry_run(&["HelloWorldFunction", "-e", "deep-event.json"]);
    assert_eq!(plan["event"].as_str().map(str::len), Some(2 * deep));
    let project = project.file(
        "samconfig.toml",
        &format!("version = 0.1\nx = {}\n", nest(deep)),
    );
    project.invoke(&["HelloWorldFunction", "--dry-run"]).fails(
        1,
        &[
            "samconfig.toml",
            "line 2, column 85: nested more than 80 levels deep",
        ],
    );
}

#[test]
fn test_bad_input_template_size_limit() {
    // 11 MB of comments: CloudFormation takes 1 MB, lamina 10 MiB.
    let padding =
        "# padding padding padding padding padding padding padding padding\n".repeat(170_000);
    let project = Project::empty().file("template.yaml", &format!("{FUNCTION}{padding}"));
    let out = project.invoke(&["--dry-run"]).measure_rss().fails(
        1,
        &[
            "template.yaml",
            "the file is larger than 10485760 bytes (lamina's limit)",
        ],
    );
    assert_bounded(&out);
    // An endless template is not held either.
    let out = project
        .invoke(&["-t", "/dev/zero", "--dry-run"])
        .measure_rss()
        .fails(1, &["/dev/zero", "larger than 10485760 bytes"]);
    assert_bounded(&out);
    // Just under the limit is fine.
    let fits = format!(
        "{FUNCTION}{}",
        &padding[..10 * 1024 * 1024 - FUNCTION.len()]
    );
    project.file("template.yaml", &fits).dry_run(&[]);
}

#[test]
fn test_bad_input_event_size_limit() {
    let seven_mb = format!("\"{}\"", "x".repeat(7_000_000));
    let project = Project::fixture("hello-python").file("big.json", &seven_mb);
    let expected = "Request must be smaller than 6291456 bytes for the InvokeFunction operation";
    let out = project
        .invoke(&["HelloWorldFunction", "-e", "big.json", "--dry-run"])
        .measure_rss()
        .fails(1, &["event file", "big.json", "is too large", expected]);
    assert_bounded(&out);
    let out = project
        .invoke(&["HelloWorldFunction", "-e", "-", "--dry-run"])
        .stdin(&seven_mb)
        .measure_rss()
        .fails(1, &["event from standard input is too large", expected]);
    assert_bounded(&out);
    // An endless stdin: refused once past the limit, not read to its end.
    let out = project
        .invoke(&["HelloWorldFunction", "-e", "/dev/zero", "--dry-run"])
        .measure_rss()
        .fails(1, &["/dev/zero", expected]);
    assert_bounded(&out);
    // Exactly 6 MB is what Lambda takes.
    let exactly = format!("\"{}\"", "x".repeat(6_291_456 - 2));
    let project = project.file("max.json", &exactly);
    let plan = project.dry_run(&["HelloWorldFunction", "-e", "max.json"]);
    assert_eq!(plan["event"].as_str().map(str::len), Some(6_291_456));
}

/// A zip of one file of `mib` MiB of zeros, deflated to about 1 KB per MiB, made without
/// compressing them all: one MiB is deflated and flushed to a byte boundary with a fresh
/// dictionary, and those bytes repeated are a deflate stream of as many MiB. The directory
/// declares `declared` bytes (the real size unless it lies).
fn zip_of_zeros(path: &Path, name: &str, mib: u32, declared: Option<u32>) {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), false);
    let mut segment = Vec::with_capacity(1 << 20);
    compress
        .compress_vec(&zeros, &mut segment, FlushCompress::Full)
        .unwrap();
    assert_eq!(compress.total_in(), 1 << 20);
    let mut end = Vec::with_capacity(64);
    compress
        .compress_vec(&[], &mut end, FlushCompress::Finish)
        .unwrap();
    let mut data = segment.repeat(mib as usize);
    data.extend_from_slice(&end);
    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..mib {
        crc.combine(&one);
    }
    let size = declared.unwrap_or(mib << 20);
    let mut header = Vec::new();
    let common = |out: &mut Vec<u8>| {
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&8u16.to_le_bytes()); // deflate
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    };
    header.extend_from_slice(&0x04034b50u32.to_le_bytes());
    common(&mut header);
    header.extend_from_slice(name.as_bytes());
    let mut central = Vec::new();
    central.extend_from_slice(&0x02014b50u32.to_le_bytes());
    central.extend_from_slice(&(0x0300u16 | 20).to_le_bytes()); // made by: Unix, 2.0
    common(&mut central);
    central.extend_from_slice(&0u16.to_le_bytes()); // comment length
    central.extend_from_slice(&0u16.to_le_bytes()); // disk
    central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // external: a 0644 file
    central.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    central.extend_from_slice(name.as_bytes());
    let central_offset = header.len() + data.len();
    let mut end_record = Vec::new();
    end_record.extend_from_slice(&0x06054b50u32.to_le_bytes());
    end_record.extend_from_slice(&[0; 4]); // disks
    end_record.extend_from_slice(&1u16.to_le_bytes());
    end_record.extend_from_slice(&1u16.to_le_bytes());
    end_record.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end_record.extend_from_slice(&(central_offset as u32).to_le_bytes());
    end_record.extend_from_slice(&0u16.to_le_bytes());
    let file = [header, data, central, end_record].concat();
    std::fs::write(path, file).unwrap();
}

/// Every file and directory under `dir`, as paths relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            found.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn test_bad_input_zip_bombs_and_unzipped_size() {
    // The unzipping happens on a real invoke, after the image is pulled: root and the registry.
    let Some(env) = sandbox_env() else { return };
    let project = Project::empty()
        .file(
            "template.yaml",
            "\
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer.zip
  DirLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: dirlayer/
  Bomb:
    Type: AWS::Serverless::Function
    Properties: {Runtime: provided.al2023, Handler: x, CodeUri: bomb.zip}
  Liar:
    Type: AWS::Serverless::Function
    Properties: {Runtime: provided.al2023, Handler: x, CodeUri: liar.zip}
  WithLayer:
    Type: AWS::Serverless::Function
    Properties: {Runtime: provided.al2023, Handler: x, CodeUri: big.zip, Layers: [!Ref Layer]}
  WithDirLayer:
    Type: AWS::Serverless::Function
    Properties: {Runtime: provided.al2023, Handler: x, CodeUri: small.zip, Layers: [!Ref DirLayer]}
",
        )
        .dir("dirlayer");
    let dir = project.path();
    // 2 GiB of zeros in a 2 MB zip.
    zip_of_zeros(&dir.join("bomb.zip"), "zeros", 2048, None);
    // The same, whose directory says 1 KB.
    zip_of_zeros(&dir.join("liar.zip"), "zeros", 2048, Some(1024));
    // 200 MiB of code and a 100 MiB layer: each fits, together they are over 250 MB.
    zip_of_zeros(&dir.join("big.zip"), "code", 200, None);
    zip_of_zeros(&dir.join("layer.zip"), "data", 100, None);
    zip_of_zeros(&dir.join("small.zip"), "code", 1, None);
    // A directory layer is copied into the cache: its 300 MB file is refused before the copy.
    std::fs::File::create(dir.join("dirlayer/huge"))
        .unwrap()
        .set_len(300_000_000)
        .unwrap();
    let cache = dir.join("cache");
    let invoke = Invoke::new(&project, &env);
    let run = |function: &str| {
        let started = std::time::Instant::now();
        let out = invoke
            .command(&[function])
            .env("LAMINA_CACHE_DIR", cache.to_str().unwrap())
            .measure_rss();
        (out, started)
    };
    let limit = "Unzipped size must be smaller than 262144000 bytes";

    let (command, started) = run("Bomb");
    let out = command.fails(
        1,
        &[
            "bomb.zip",
            limit,
            "Lambda's limit for a function's code and layers, unzipped; the zip says it holds 2147483648 bytes",
        ],
    );
    invoke.assert_clean(&out);
    assert_bounded(&out);
    assert!(started.elapsed().as_secs() < 60, "stopped early");
    let (command, _) = run("Liar");
    let out = command.fails(
        1,
        &["liar.zip", "larger than its declared uncompressed size"],
    );
    invoke.assert_clean(&out);
    assert_bounded(&out);
    // Nothing of either is in the code cache, not even a staging directory.
    assert_eq!(tree(&cache.join("code-v1")), Vec::<PathBuf>::new());

    let (command, _) = run("WithLayer");
    let out = command.fails(1, &["layer.zip", limit, "the code takes 209715200 bytes"]);
    invoke.assert_clean(&out);
    assert_bounded(&out);
    // The code fits on its own and is cached (with its size); the layers are not.
    let code = tree(&cache.join("code-v1"));
    assert_eq!(code.len(), 3, "{code:?}");
    assert!(
        code.iter().any(|p| p.to_string_lossy().ends_with(".size")),
        "{code:?}"
    );
    assert_eq!(tree(&cache.join("layers-v1")), Vec::<PathBuf>::new());

    let (command, _) = run("WithDirLayer");
    let out = command.fails(1, &["dirlayer/huge", limit]);
    invoke.assert_clean(&out);
    assert_eq!(tree(&cache.join("layers-v1")), Vec::<PathBuf>::new());
}

#[test]
fn test_bad_input_zip_bomb_layer_published_in_aws() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::empty().dir("code");
    zip_of_zeros(&project.path().join("bomb.zip"), "python/zeros", 2048, None);
    let Some(api) = LambdaApi::start(project.path(), &[project.path().join("bomb.zip")], None)
    else {
        return;
    };
    let project = project.file(
        "template.yaml",
        &format!(
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {{Runtime: provided.al2023, Handler: x, CodeUri: code/, Layers: [{}]}}\n",
            api.arns[0]
        ),
    );
    let layers = project.path().join("layers-pkg");
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["Fn", "--layer-cache-basedir", layers.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &api.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .measure_rss()
        .fails(
            1,
            &[
                &format!(
                    "layer {}: Unzipped size must be smaller than 262144000 bytes",
                    api.arns[0]
                ),
                "the zip says it holds 2147483648 bytes); nothing was cached",
            ],
        );
    invoke.assert_clean(&out);
    assert_bounded(&out);
    // Only SAM's lock bookkeeping remains: no layer directory, no staging, no partial zip.
    let left: Vec<PathBuf> = tree(&layers)
        .into_iter()
        .filter(|p| !p.starts_with(".locks"))
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new());
}
