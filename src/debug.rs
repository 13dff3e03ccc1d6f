//! Debug mode per runtime, as `sam local invoke -d` sets it up (spec §7): the command that starts
//! the runtime with a debugger, and the variables that turn debugging on. `port` is the first
//! `--debug-port`, `args` the `--debug-args` words.

/// What debug mode changes for one runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DebugSettings {
    /// Replaces the runtime's usual command (None: keep it).
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
}

pub fn settings(runtime: &str, port: u16, args: &[String]) -> DebugSettings {
    let args: Vec<String> = args.iter().filter(|a| !a.is_empty()).cloned().collect();
    let joined = args.join(" ");
    let java = |address: &str, tail: &str| DebugSettings {
        command: None,
        // SAM appends the debug args with no separating space; kept, as it is what users pass.
        env: vec![(
            "_JAVA_OPTIONS".into(),
            format!(
                "-agentlib:jdwp=transport=dt_socket,server=y,suspend=y,quiet=y,address={address}{tail}{joined}"
            ),
        )],
    };
    if runtime.starts_with("python") {
        let command = std::iter::once(format!("/var/lang/bin/{runtime}"))
            .chain(args)
            .chain(["/var/runtime/bootstrap.py".to_string()])
            .collect();
        return DebugSettings {
            command: Some(command),
            env: vec![],
        };
    }
    if let Some(version) = runtime
        .strip_prefix("nodejs")
        .map(|v| v.trim_end_matches(".x").to_string())
    {
        let command = std::iter::once("/var/lang/bin/node".to_string())
            .chain(args)
            .chain(["--no-lazy", "--expose-gc", "/var/runtime/index.mjs"].map(String::from))
            .collect();
        return DebugSettings {
            command: Some(command),
            env: vec![
                (
                    "NODE_PATH".into(),
                    format!(
                        "/opt/nodejs/node_modules:/opt/nodejs/node{version}/node_modules:/var/runtime/node_modules:/var/runtime:/var/task"
                    ),
                ),
                (
                    "NODE_OPTIONS".into(),
                    format!("--inspect-brk=0.0.0.0:{port} --max-http-header-size 81920"),
                ),
                (
                    "AWS_EXECUTION_ENV".into(),
                    format!("AWS_Lambda_nodejs{version}.x"),
                ),
            ],
        };
    }
    match runtime {
        "java8.al2" | "java8.al2023" => java(
            &port.to_string(),
            " -XX:MaxHeapSize=2834432k -XX:MaxMetaspaceSize=163840k -XX:ReservedCodeCacheSize=81920k -XX:+UseSerialGC -XX:-TieredCompilation -Djava.net.preferIPv4Stack=true -Xshare:off",
        ),
        "java11" | "java11.al2023" => java(
            &format!("*:{port}"),
            " -XX:MaxHeapSize=2834432k -XX:MaxMetaspaceSize=163840k -XX:ReservedCodeCacheSize=81920k -XX:+UseSerialGC -XX:-TieredCompilation -Djava.net.preferIPv4Stack=true",
        ),
        r if r.starts_with("java") => java(
            &format!("*:{port}"),
            " -XX:MaxHeapSize=2834432k -XX:+UseSerialGC -XX:+TieredCompilation -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true",
        ),
        r if r.starts_with("dotnet") => DebugSettings {
            command: Some(
                std::iter::once("/var/runtime/bootstrap".to_string())
                    .chain(args)
                    .collect(),
            ),
            env: vec![("_AWS_LAMBDA_DOTNET_DEBUGGING".into(), "1".into())],
        },
        "go1.x" => {
            let api = args
                .windows(2)
                .find(|w| w[0] == "-delveAPI")
                .map_or("1".to_string(), |w| w[1].clone());
            DebugSettings {
                command: None,
                env: vec![
                    ("_AWS_LAMBDA_GO_DEBUGGING".into(), "1".into()),
                    ("_AWS_LAMBDA_GO_DELVE_API_VERSION".into(), api),
                    ("_AWS_LAMBDA_GO_DELVE_LISTEN_PORT".into(), port.to_string()),
                    (
                        "_AWS_LAMBDA_GO_DELVE_PATH".into(),
                        "/tmp/lambci_debug_files/dlv".into(),
                    ),
                ],
            }
        }
        // ruby, provided and image functions: the function starts as usual; its own debugger (or
        // `--container-env-vars`) listens on the forwarded port. (SAM refuses ruby and provided.)
        _ => DebugSettings::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    #[test]
    fn test_debug_settings_as_sam() {
        let python = settings(
            "python3.12",
            5890,
            &words("-m debugpy --listen 0.0.0.0:5890 --wait-for-client"),
        );
        assert_eq!(
            python.command.unwrap(),
            words(
                "/var/lang/bin/python3.12 -m debugpy --listen 0.0.0.0:5890 --wait-for-client /var/runtime/bootstrap.py"
            )
        );
        let node = settings("nodejs20.x", 9229, &[]);
        assert_eq!(
            node.command.unwrap(),
            words("/var/lang/bin/node --no-lazy --expose-gc /var/runtime/index.mjs")
        );
        assert!(node.env.contains(&(
            "NODE_OPTIONS".into(),
            "--inspect-brk=0.0.0.0:9229 --max-http-header-size 81920".into()
        )));
        assert!(
            node.env
                .contains(&("AWS_EXECUTION_ENV".into(), "AWS_Lambda_nodejs20.x".into()))
        );
        let java = settings("java21", 5005, &[]);
        assert!(java.env[0].1.starts_with("-agentlib:jdwp=transport=dt_socket,server=y,suspend=y,quiet=y,address=*:5005 -XX:MaxHeapSize"));
        let java8 = settings("java8.al2", 5005, &["-Dx=1".into()]);
        assert!(
            java8.env[0].1.contains("address=5005 ")
                && java8.env[0].1.ends_with("-Xshare:off-Dx=1")
        );
        let go = settings("go1.x", 5986, &words("-delveAPI 2"));
        assert!(
            go.env
                .contains(&("_AWS_LAMBDA_GO_DELVE_API_VERSION".into(), "2".into()))
        );
        assert_eq!(
            settings("dotnet8", 1, &[]).command.unwrap(),
            ["/var/runtime/bootstrap"]
        );
        assert_eq!(
            settings("provided.al2023", 1, &[]),
            DebugSettings::default()
        );
    }
}
