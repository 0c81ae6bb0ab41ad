//! Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`): request rate, error rate
//! and p95 latency of the services, now and as a 30-day trend for the monthly review.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::config::PrometheusConfig;

/// Errors talking to Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus rejected query {query:?}: {error_type}: {error}")]
    Query {
        query: String,
        error_type: String,
        error: String,
    },
    #[error("Prometheus answered query {query:?} with {what}")]
    Shape { query: String, what: String },
}

/// The API envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    value: (f64, String),
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    values: Vec<(f64, String)>,
}

/// One point of a trend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: Timestamp,
    pub value: f64,
}

/// The service-level figures of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceFigures {
    /// Requests per second; absent when the query returned no series.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_rate_per_second: Option<f64>,
    /// Share of 5xx responses, 0–1; absent without traffic (0/0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_rate: Option<f64>,
    /// 95th percentile latency in seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p95_latency_seconds: Option<f64>,
}

/// Parses a Prometheus sample value ("1.5", "NaN", "+Inf").
fn value(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

fn unpack(query: &str, env: Envelope) -> Result<Data, PromError> {
    if env.status != "success" {
        return Err(PromError::Query {
            query: query.into(),
            error_type: env.error_type.unwrap_or_default(),
            error: env.error.unwrap_or_default(),
        });
    }
    env.data.ok_or_else(|| PromError::Shape {
        query: query.into(),
        what: "no data".into(),
    })
}

/// Client of one Prometheus.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    cfg: PrometheusConfig,
}

impl Prometheus {
    /// # Errors
    /// Only if the HTTP client cannot be built.
    pub fn new(cfg: PrometheusConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: super::client(cfg.timeout.get())?,
            cfg,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Data, PromError> {
        let url = format!("{}{path}", self.cfg.url.trim_end_matches('/'));
        let http = |source| PromError::Http {
            url: url.clone(),
            source,
        };
        // Prometheus answers 400/422 with the error envelope: read the body whatever the status.
        let env: Envelope = self
            .client
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(http)?
            .json()
            .await
            .map_err(http)?;
        unpack(query, env)
    }

    /// An instant query at `at`: the first sample's value (a scalar's value), `None` when
    /// the result is empty or not a finite number.
    ///
    /// # Errors
    /// HTTP errors, a rejected query, or a range-vector answer.
    pub async fn instant(&self, query: &str, at: Timestamp) -> Result<Option<f64>, PromError> {
        let params = [
            ("query", query.to_string()),
            ("time", at.as_second().to_string()),
        ];
        match self.get("/api/v1/query", &params, query).await? {
            Data::Vector(v) => Ok(v.first().and_then(|s| value(&s.value.1))),
            Data::Scalar((_, v)) => Ok(value(&v)),
            other => Err(PromError::Shape {
                query: query.into(),
                what: format!("{other:?}"),
            }),
        }
    }

    /// A range query: the first series' points from `start` to `end` every `step_seconds`.
    ///
    /// # Errors
    /// As [`Self::instant`].
    pub async fn range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step_seconds: u64,
    ) -> Result<Vec<Point>, PromError> {
        let params = [
            ("query", query.to_string()),
            ("start", start.as_second().to_string()),
            ("end", end.as_second().to_string()),
            ("step", step_seconds.to_string()),
        ];
        match self.get("/api/v1/query_range", &params, query).await? {
            Data::Matrix(m) => Ok(m
                .first()
                .map(|s| {
                    s.values
                        .iter()
                        .filter_map(|(t, v)| {
                            Some(Point {
                                at: Timestamp::from_second(*t as i64).ok()?,
                                value: value(v)?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()),
            other => Err(PromError::Shape {
                query: query.into(),
                what: format!("{other:?}"),
            }),
        }
    }

    /// The three configured figures at `at`.
    ///
    /// # Errors
    /// The first query that fails.
    pub async fn figures(&self, at: Timestamp) -> Result<ServiceFigures, PromError> {
        let c = &self.cfg;
        Ok(ServiceFigures {
            request_rate_per_second: self.instant(&c.expand(&c.request_rate_query), at).await?,
            error_rate: self.instant(&c.expand(&c.error_rate_query), at).await?,
            p95_latency_seconds: self.instant(&c.expand(&c.p95_latency_query), at).await?,
        })
    }

    /// Problems against the thresholds (error rate, p95), as sentences.
    pub fn problems(&self, f: &ServiceFigures) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(e) = f.error_rate.filter(|e| *e > self.cfg.error_rate_max) {
            out.push((
                "error_rate_high",
                format!(
                    "error rate {:.2} % is above {:.2} %",
                    e * 100.0,
                    self.cfg.error_rate_max * 100.0
                ),
            ));
        }
        if let Some(p) = f
            .p95_latency_seconds
            .filter(|p| *p > self.cfg.p95_latency_max_seconds)
        {
            out.push((
                "p95_latency_high",
                format!(
                    "p95 latency {p:.3} s is above {:.3} s",
                    self.cfg.p95_latency_max_seconds
                ),
            ));
        }
        out
    }

    pub fn config(&self) -> &PrometheusConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_api_shapes() {
        let v: Envelope = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1800000000.5,"0.25"]}]}}"#,
        )
        .unwrap();
        match unpack("q", v).unwrap() {
            Data::Vector(s) => assert_eq!(value(&s[0].value.1), Some(0.25)),
            other => panic!("{other:?}"),
        }
        let nan: Envelope =
            serde_json::from_str(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#).unwrap();
        match unpack("q", nan).unwrap() {
            Data::Vector(s) => assert_eq!(value(&s[0].value.1), None),
            other => panic!("{other:?}"),
        }
        let err: Envelope = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
        )
        .unwrap();
        assert_eq!(
            unpack("sum(", err).unwrap_err().to_string(),
            r#"Prometheus rejected query "sum(": bad_data: parse error at char 5"#
        );
        let m: Envelope = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1800000000,"1"],[1800086400,"2"]]}]}}"#,
        )
        .unwrap();
        assert!(matches!(unpack("q", m).unwrap(), Data::Matrix(s) if s[0].values.len() == 2));
    }

    #[test]
    fn thresholds_are_strictly_above() {
        let p = Prometheus::new(PrometheusConfig::new("http://p")).unwrap();
        let at = |e, l| ServiceFigures {
            request_rate_per_second: Some(1.0),
            error_rate: Some(e),
            p95_latency_seconds: Some(l),
        };
        assert!(p.problems(&at(0.05, 1.0)).is_empty());
        let codes: Vec<_> = p
            .problems(&at(0.0501, 1.2))
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(codes, vec!["error_rate_high", "p95_latency_high"]);
        assert_eq!(
            p.problems(&at(0.2, 0.1))[0].1,
            "error rate 20.00 % is above 5.00 %"
        );
    }
}
