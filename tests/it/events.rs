//! The event: a file, standard input, or the default `{}`.

use crate::util::Project;

#[test]
fn test_events_sources() {
    let project =
        Project::fixture("hello-python").file("crlf.json", "{\r\n  \"a\": \"ü\"\r\n}\r\n");
    assert_eq!(project.dry_run(&["HelloWorldFunction"])["event"], "{}");
    // Standard input is not read without `-e -`.
    let plan = project
        .invoke(&["HelloWorldFunction", "--dry-run"])
        .stdin("{\"ignored\": 1}")
        .success_json();
    assert_eq!(plan["event"], "{}");
    let out = project
        .invoke(&["HelloWorldFunction", "--dry-run", "-e", "-"])
        .stdin("{\"from\": \"stdin\"}")
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("Reading invoke payload from stdin"));
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["event"], "{\"from\": \"stdin\"}");
    assert_eq!(
        project.dry_run(&["HelloWorldFunction", "-e", "crlf.json"])["event"],
        "{\n  \"a\": \"ü\"\n}\n"
    );
    // Not JSON is fine: SAM posts the text verbatim.
    let project = project.file("text.txt", "plain text");
    assert_eq!(
        project.dry_run(&["HelloWorldFunction", "-e", "text.txt"])["event"],
        "plain text"
    );
}

#[test]
fn test_events_are_read_before_the_template() {
    // With a missing event and a broken template, the event error comes first (as SAM).
    let project = Project::empty().file("template.yaml", "Resources: [");
    project
        .invoke(&["-e", "nope.json", "--dry-run"])
        .fails(1, &["nope.json"]);
}
