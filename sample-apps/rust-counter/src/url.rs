//! Add-on URLs taken apart.

/// `scheme://user:password@host:port/path` split into its parts.
pub struct Url {
    pub user: String,
    pub password: String,
    pub address: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url.split_once("://").ok_or("a URL needs a scheme")?.1;
    let (credentials, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(Url {
        user: user.to_string(),
        password: password.to_string(),
        address: address.to_string(),
        path: path.split('?').next().unwrap_or("").to_string(),
    })
}
