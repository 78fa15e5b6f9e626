//! The markers as DataFusion documents them: `SHOW FUNCTIONS` and
//! `information_schema` describe each one from `Derivative`'s text, and the
//! documented example runs and computes what the description says.

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_autograd::{udf, Derivative};

use crate::common::{assert_close, column, register};

/// A context that answers `SHOW FUNCTIONS` and `information_schema` queries.
fn documented_context() -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    datafusion_autograd::register(&ctx);
    ctx
}

/// Every row of `sql` as text, one string per column.
async fn text_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows = vec![];
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, row).unwrap())
                    .collect(),
            );
        }
    }
    rows
}

/// `[a, b, c]`, as DataFusion prints a list.
fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

#[tokio::test]
async fn show_functions_describes_every_marker() {
    let ctx = documented_context();
    for marker in Derivative::ALL {
        let name = marker.name();
        let rows = text_rows(&ctx, &format!("SHOW FUNCTIONS LIKE '{name}'")).await;
        let names = marker.arguments().iter().map(|(n, _)| n.to_string());
        let doubles = marker.arguments().iter().map(|_| "Float64".to_string());
        assert_eq!(
            rows,
            vec![vec![
                name.to_string(),
                "Float64".to_string(),
                list(names),
                list(doubles),
                "SCALAR".to_string(),
                marker.summary().to_string(),
                marker.usage().to_string(),
            ]],
            "SHOW FUNCTIONS LIKE '{name}'"
        );
    }
}

#[tokio::test]
async fn information_schema_lists_routines_and_parameters() {
    let ctx = documented_context();
    for marker in Derivative::ALL {
        let name = marker.name();
        let routines = text_rows(
            &ctx,
            &format!(
                "SELECT routine_type, is_deterministic, data_type, function_type, description, \
                 syntax_example FROM information_schema.routines WHERE routine_name = '{name}'"
            ),
        )
        .await;
        assert_eq!(
            routines,
            vec![vec![
                "FUNCTION".to_string(),
                "true".to_string(),
                "Float64".to_string(),
                "SCALAR".to_string(),
                marker.summary().to_string(),
                marker.usage().to_string(),
            ]],
            "information_schema.routines for {name}"
        );

        let parameters = text_rows(
            &ctx,
            &format!(
                "SELECT parameter_mode, ordinal_position, parameter_name, data_type \
                 FROM information_schema.parameters WHERE specific_name = '{name}' \
                 ORDER BY parameter_mode, ordinal_position"
            ),
        )
        .await;
        let mut expected: Vec<Vec<String>> = marker
            .arguments()
            .iter()
            .enumerate()
            .map(|(i, (argument, _))| {
                vec![
                    "IN".to_string(),
                    (i + 1).to_string(),
                    argument.to_string(),
                    "Float64".to_string(),
                ]
            })
            .collect();
        expected.push(vec![
            "OUT".to_string(),
            "1".to_string(),
            String::new(),
            "Float64".to_string(),
        ]);
        assert_eq!(
            parameters, expected,
            "information_schema.parameters for {name}"
        );
    }
}

#[test]
fn documentation_comes_from_the_marker_text() {
    for marker in Derivative::ALL {
        let udf = udf(marker);
        let doc = udf.documentation().expect("every marker is documented");
        assert_eq!(doc.description, marker.summary());
        assert_eq!(doc.syntax_example, marker.usage());
        assert_eq!(
            doc.sql_example.as_deref(),
            Some(format!("```sql\n{}\n```", marker.example()).as_str())
        );
        let arguments: Vec<(&str, &str)> = doc
            .arguments
            .iter()
            .flatten()
            .map(|(n, m)| (n.as_str(), m.as_str()))
            .collect();
        assert_eq!(arguments, marker.arguments());
        let related: Vec<&str> = doc
            .related_udfs
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let others: Vec<&str> = Derivative::ALL
            .into_iter()
            .filter(|d| *d != marker)
            .map(Derivative::name)
            .collect();
        assert_eq!(related, others);
    }
}

/// The documented example of each marker, run over a table it can read,
/// against the derivative written in Rust.
#[tokio::test]
async fn documented_examples_compute_the_documented_derivative() {
    let ctx = documented_context();
    let xs = [0.25, -1.5, 2.0, 0.75];
    let samples: [(&str, [f64; 4]); 6] = [
        ("x", xs),
        ("a", [0.5, 1.5, -0.25, 2.0]),
        ("da", [1.0, -2.0, 0.5, 3.0]),
        ("w", [1.25; 4]),
        ("y", [0.5, -1.0, 3.0, 1.0]),
        ("unused", [0.0; 4]),
    ];
    let columns: Vec<(&str, Vec<Option<f64>>)> = samples
        .iter()
        .map(|(name, values)| (*name, values.iter().map(|&v| Some(v)).collect()))
        .collect();
    register(&ctx, "samples", &columns);
    let [(_, x), (_, a), (_, da), (_, w), (_, y), _] = samples;

    let slopes = column(
        &ctx,
        &format!(
            "SELECT slope FROM ({}) ORDER BY x",
            Derivative::Grad.example()
        ),
    )
    .await;
    let mut sorted = x;
    sorted.sort_by(f64::total_cmp);
    for (got, x) in slopes.iter().zip(sorted) {
        assert_close(*got, x.cos() * x + x.sin(), 1e-12, "grad example");
    }

    let jvps = column(&ctx, Derivative::Jvp.example()).await;
    for i in 0..4 {
        let want = x[i] * (a[i] * x[i]).exp() * da[i];
        assert_close(jvps[i], want, 1e-12, "jvp example");
    }

    let vjp = column(&ctx, Derivative::Vjp.example()).await;
    let want: f64 = (0..4)
        .map(|i| 0.5 * 2.0 * (w[i] * x[i] - y[i]) * x[i])
        .sum();
    assert_close(vjp[0], want, 1e-12, "vjp example");
}

/// `stop_gradient` is described as the markers are, and its example computes
/// what it says (x, not 2x).
#[tokio::test]
async fn stop_gradient_is_documented() {
    let ctx = documented_context();
    let udf = datafusion_autograd::stop_gradient_udf();
    let documentation = udf.documentation().expect("stop_gradient is documented");
    let routines = text_rows(
        &ctx,
        "SELECT routine_type, is_deterministic, function_type, description, syntax_example \
         FROM information_schema.routines WHERE routine_name = 'stop_gradient'",
    )
    .await;
    assert_eq!(
        routines,
        vec![vec![
            "FUNCTION".to_string(),
            "true".to_string(),
            "SCALAR".to_string(),
            documentation.description.clone(),
            "stop_gradient(expression)".to_string(),
        ]]
    );
    let parameters = text_rows(
        &ctx,
        "SELECT parameter_name FROM information_schema.parameters \
         WHERE specific_name = 'stop_gradient' AND parameter_mode = 'IN'",
    )
    .await;
    assert!(
        parameters
            .iter()
            .all(|p| p == &vec!["expression".to_string()])
            && !parameters.is_empty(),
        "{parameters:?}"
    );
    register(&ctx, "samples", &[("x", vec![Some(1.5), Some(-2.0)])]);
    let example = documentation.sql_example.as_deref().unwrap();
    let query = example
        .trim_start_matches("```sql\n")
        .split("  --")
        .next()
        .unwrap();
    let got = column(&ctx, &format!("{query} ORDER BY id")).await;
    for (g, x) in got.iter().zip([1.5, -2.0]) {
        assert_close(*g, x, 1e-15, "the documented example");
    }
}
