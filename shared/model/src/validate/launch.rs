//! The launch fields a MachineClass and a Machine's resolved launch spec share (image,
//! subnets, instance types, volumes, market, metadata options, tags, user data,
//! bootstrap), as EC2
//! would take them, and a Machine's failure domain.

use std::collections::{BTreeMap, BTreeSet};

use super::Errors;
use super::limits::{
    MAX_GP3_IOPS, MAX_HOP_LIMIT, MAX_INSTANCE_PROFILE_LEN, MAX_IO_IOPS, MAX_ROOT_VOLUME_GIB,
    MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN, MAX_TAGS, MAX_USER_DATA_BYTES, MIN_GP3_IOPS, MIN_IO_IOPS,
    MIN_ROOT_VOLUME_GIB, RESERVED_TAG_PREFIXES,
};
use super::secrets::{SECRET_HINT, secrets_in};
use crate::kinds::{
    Bootstrap, HttpTokens, LaunchSpec, Market, MarketType, MetadataOptions, RootVolume, VolumeType,
};

/// The launch fields a MachineClass and a Machine's resolved launch spec share.
pub(super) struct LaunchFields<'a> {
    pub(super) image_id: &'a str,
    pub(super) instance_types: &'a [String],
    pub(super) security_groups: &'a [String],
    pub(super) instance_profile: Option<&'a str>,
    pub(super) root_volume: &'a RootVolume,
    pub(super) market: &'a Market,
    pub(super) metadata_options: &'a MetadataOptions,
    pub(super) tags: &'a BTreeMap<String, String>,
    pub(super) user_data: Option<&'a str>,
    pub(super) bootstrap: Option<&'a Bootstrap>,
    /// A MachineClass's failure domains; a Machine has one, checked on its own.
    pub(super) subnets: Option<&'a [String]>,
}

impl<'a> From<&'a LaunchSpec> for LaunchFields<'a> {
    fn from(l: &'a LaunchSpec) -> Self {
        LaunchFields {
            image_id: &l.image_id,
            instance_types: &l.instance_types,
            security_groups: &l.security_groups,
            instance_profile: l.instance_profile.as_deref(),
            root_volume: &l.root_volume,
            market: &l.market,
            metadata_options: &l.metadata_options,
            tags: &l.tags,
            user_data: l.user_data.as_deref(),
            bootstrap: l.bootstrap.as_ref(),
            subnets: None,
        }
    }
}

pub(super) fn launch(v: &mut Errors, base: &str, l: &LaunchFields) {
    let at = |field: &str| format!("{base}.{field}");
    if l.image_id.is_empty() {
        v.push(
            at("imageId"),
            "is required",
            "set the AMI to launch, e.g. ami-0abcdef1234567890",
        );
    } else if !is_aws_id(l.image_id, "ami-") {
        v.push(
            at("imageId"),
            format!("{:?} is not an AMI id", l.image_id),
            "use ami- followed by 8 or 17 hexadecimal digits, e.g. ami-0abcdef1234567890",
        );
    }
    instance_types(v, &at("instanceTypes"), l.instance_types);
    if let Some(subnets) = l.subnets {
        if subnets.is_empty() {
            v.push(
                at("subnets"),
                "must name at least one subnet",
                "list the subnets to spread Machines over, one per availability zone, e.g. [subnet-0a1b2c3d4e5f60001]",
            );
        }
        aws_ids(v, &at("subnets"), subnets, "subnet-", "subnet");
    }
    aws_ids(
        v,
        &at("securityGroups"),
        l.security_groups,
        "sg-",
        "security group",
    );
    if let Some(profile) = l.instance_profile {
        instance_profile(v, &at("instanceProfile"), profile);
    }
    root_volume(v, &at("rootVolume"), l.root_volume);
    market(v, &at("market"), l.market);
    // The secure defaults are not optional: the deployment's IAM refuses a launch
    // without IMDSv2 or with an unencrypted volume (infra/template.yaml), so say so
    // here, naming the field, rather than as a Failed Machine later.
    if l.metadata_options.http_tokens != HttpTokens::Required {
        v.push(
            at("metadataOptions.httpTokens"),
            "must be required (IMDSv2): the installation's IAM refuses instances that accept IMDSv1",
            "remove httpTokens (it defaults to required), or set httpTokens: required",
        );
    }
    let hops = l.metadata_options.http_put_response_hop_limit;
    if !(1..=MAX_HOP_LIMIT).contains(&hops) {
        v.push(
            at("metadataOptions.httpPutResponseHopLimit"),
            format!("must be from 1 to {MAX_HOP_LIMIT}, found {hops}"),
            "keep 1 so containers cannot reach the instance's credentials; 2 if pods need IMDS",
        );
    }
    tags(v, &at("tags"), l.tags);
    if let Some(data) = l.user_data {
        user_data(v, &at("userData"), data);
    }
    if let Some(b) = l.bootstrap {
        super::bootstrap::bootstrap(v, base, b, l.user_data);
    }
}

fn instance_types(v: &mut Errors, path: &str, types: &[String]) {
    if types.is_empty() {
        v.push(
            path,
            "must name at least one instance type",
            "list instance types in order of preference, e.g. [m7i.large, m6i.large]",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, t) in types.iter().enumerate() {
        if !is_instance_type(t) {
            v.push(
                format!("{path}[{i}]"),
                format!("{t:?} is not an instance type"),
                "write family.size, e.g. m7i.large",
            );
        } else if !seen.insert(t.as_str()) {
            v.push(
                format!("{path}[{i}]"),
                format!("{t:?} is listed twice"),
                "list each instance type once",
            );
        }
    }
}

/// `family.size`, e.g. `m7i.large`, `u-6tb1.metal`, `c7gn.metal-48xl`.
pub fn is_instance_type(s: &str) -> bool {
    let Some((family, size)) = s.split_once('.') else {
        return false;
    };
    let part_ok = |p: &str| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    family.starts_with(|c: char| c.is_ascii_lowercase()) && part_ok(family) && part_ok(size)
}

/// `<prefix>` followed by 8 or 17 lowercase hexadecimal digits, as EC2 ids are.
pub fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn aws_ids(v: &mut Errors, path: &str, ids: &[String], prefix: &str, what: &str) {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !is_aws_id(id, prefix) {
            v.push(
                format!("{path}[{i}]"),
                format!("{id:?} is not a {what} id"),
                format!("use {prefix} followed by 8 or 17 hexadecimal digits, e.g. {prefix}0a1b2c3d4e5f60001"),
            );
        } else if !seen.insert(id.as_str()) {
            v.push(
                format!("{path}[{i}]"),
                format!("{id:?} is listed twice"),
                format!("list each {what} once"),
            );
        }
    }
}

fn instance_profile(v: &mut Errors, path: &str, profile: &str) {
    if profile.starts_with("arn:") {
        v.push(
            path,
            "is an ARN; Capstan takes the instance profile's name",
            "set the name alone, the part after instance-profile/, e.g. capstan-nodes",
        );
    } else if profile.is_empty() || profile.len() > MAX_INSTANCE_PROFILE_LEN {
        v.push(
            path,
            format!(
                "must be 1 to {MAX_INSTANCE_PROFILE_LEN} characters, found {}",
                profile.len()
            ),
            "set the instance profile's name, or remove the field",
        );
    } else if !profile
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        v.push(
            path,
            format!("{profile:?} is not a valid instance profile name"),
            "IAM names use letters, digits and +=,.@_-",
        );
    }
}

fn root_volume(v: &mut Errors, base: &str, volume: &RootVolume) {
    let size = volume.size_gib;
    if !(MIN_ROOT_VOLUME_GIB..=MAX_ROOT_VOLUME_GIB).contains(&size) {
        v.push(
            format!("{base}.sizeGiB"),
            format!(
                "must be from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB} GiB, found {size}"
            ),
            format!("set a size from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB}"),
        );
    }
    let iops_path = format!("{base}.iops");
    match (volume.volume_type, volume.iops) {
        (VolumeType::Io1 | VolumeType::Io2, None) => v.push(
            iops_path,
            "is required for io1 and io2 volumes",
            format!("set iops from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
        ),
        (VolumeType::Io1 | VolumeType::Io2, Some(n))
            if !(MIN_IO_IOPS..=MAX_IO_IOPS).contains(&n) =>
        {
            v.push(
                iops_path,
                format!("must be from {MIN_IO_IOPS} to {MAX_IO_IOPS} for io1 and io2, found {n}"),
                format!("set iops from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
            )
        }
        (VolumeType::Gp2, Some(_)) => v.push(
            iops_path,
            "cannot be set for gp2 volumes: their IOPS follow their size",
            "remove iops, or use type gp3",
        ),
        (VolumeType::Gp3, Some(n)) if !(MIN_GP3_IOPS..=MAX_GP3_IOPS).contains(&n) => v.push(
            iops_path,
            format!("must be from {MIN_GP3_IOPS} to {MAX_GP3_IOPS} for gp3, found {n}"),
            format!(
                "set iops from {MIN_GP3_IOPS} to {MAX_GP3_IOPS}, or remove it for the 3000 baseline"
            ),
        ),
        _ => {}
    }
    if !volume.encrypted {
        v.push(
            format!("{base}.encrypted"),
            "must be true: the installation's IAM refuses unencrypted volumes",
            "remove encrypted (it defaults to true), or set encrypted: true",
        );
    }
}

fn market(v: &mut Errors, base: &str, market: &Market) {
    let Some(price) = &market.spot_max_price else {
        return;
    };
    let path = format!("{base}.spotMaxPrice");
    if market.market_type != MarketType::Spot {
        v.push(
            &path,
            "is set but market type is OnDemand",
            "set type: Spot, or remove spotMaxPrice",
        );
    }
    if !is_positive_decimal(price) {
        v.push(
            &path,
            format!("{price:?} is not a positive price"),
            "write the hourly price in USD as a decimal, e.g. \"0.12\"",
        );
    }
}

fn is_positive_decimal(s: &str) -> bool {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && (!s.contains('.') || !fraction.is_empty())
        && s.chars().any(|c| ('1'..='9').contains(&c))
}

fn tags(v: &mut Errors, base: &str, tags: &BTreeMap<String, String>) {
    if tags.len() > MAX_TAGS {
        v.push(
            base,
            format!("has {} tags, more than {MAX_TAGS}", tags.len()),
            format!("keep at most {MAX_TAGS}: EC2 allows 50 per instance and Capstan adds its own"),
        );
    }
    for (key, value) in tags {
        let path = format!("{base}[{key:?}]");
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY_LEN {
            v.push(
                &path,
                format!("tag key must be 1 to {MAX_TAG_KEY_LEN} characters, found {key_len}"),
                "shorten the key",
            );
        }
        let lower = key.to_ascii_lowercase();
        if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            v.push(
                &path,
                format!("tag key {key:?} uses the reserved prefix {prefix}"),
                "choose another key: aws: is AWS's, and Capstan sets capstan.dev/ tags itself to find and protect its instances",
            );
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            v.push(
                &path,
                format!(
                    "tag value is {} characters long, more than {MAX_TAG_VALUE_LEN}",
                    value.chars().count()
                ),
                "shorten the value",
            );
        }
    }
}

fn user_data(v: &mut Errors, path: &str, data: &str) {
    if data.len() > MAX_USER_DATA_BYTES {
        v.push(
            path,
            format!(
                "is {} bytes, more than EC2's limit of {MAX_USER_DATA_BYTES}",
                data.len()
            ),
            "keep user data small: download larger scripts at boot, e.g. from S3",
        );
    }
    for finding in secrets_in(data) {
        v.push(path, finding, SECRET_HINT);
    }
}

pub(super) fn failure_domain(v: &mut Errors, path: &str, subnet: &str) {
    if subnet.is_empty() {
        v.push(path, "is required", "name the subnet the Machine goes to");
    } else if !is_aws_id(subnet, "subnet-") {
        v.push(
            path,
            format!("{subnet:?} is not a subnet id"),
            "use subnet- followed by 8 or 17 hexadecimal digits, one of the MachineClass's subnets",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        for good in ["m7i.large", "c7gn.metal-48xl", "u-6tb1.metal", "t3.2xlarge"] {
            assert!(is_instance_type(good), "{good}");
        }
        for bad in ["large", "M7i.large", "m7i.", ".large", "m7i.large.x"] {
            assert!(!is_instance_type(bad), "{bad}");
        }
        assert!(is_aws_id("subnet-0a1b2c3d", "subnet-"));
        assert!(!is_aws_id("subnet-0A1B2C3D", "subnet-"));

        assert!(is_positive_decimal("0.12") && is_positive_decimal("1"));
        for bad in ["0", "0.0", "-1", ".", "1.", "abc", ""] {
            assert!(!is_positive_decimal(bad), "{bad}");
        }
    }
}
