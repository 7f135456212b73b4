# A bucket behind cacheyd's replicas (enable_s3_tier), see docs/storage.md:
# cacheyd uploads verified public blobs there and reads them back on a
# miss, so upstream sees a blob once per bucket until the lifecycle rule
# expires it. cacheyd never deletes: expiry is this rule's job. The role is
# for cacheyd's service account, through IRSA or EKS Pod Identity: the
# nodes' launch templates keep the instance metadata service out of pods'
# reach (http_put_response_hop_limit = 1), so the node's role is never used.

locals {
  s3_tier = var.enable_s3_tier ? 1 : 0
  irsa    = var.enable_s3_tier && var.s3_credentials == "irsa" ? 1 : 0
  pod_id  = var.enable_s3_tier && var.s3_credentials == "pod-identity" ? 1 : 0
}

resource "aws_s3_bucket" "cache" {
  count         = local.s3_tier
  bucket        = var.s3_bucket_name != "" ? var.s3_bucket_name : null
  bucket_prefix = var.s3_bucket_name == "" ? "${substr(var.cluster_name, 0, 28)}-cacheyd-" : null
}

resource "aws_s3_bucket_public_access_block" "cache" {
  count                   = local.s3_tier
  bucket                  = aws_s3_bucket.cache[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# The bucket owns every object, so no ACL ever grants anyone else access.
resource "aws_s3_bucket_ownership_controls" "cache" {
  count  = local.s3_tier
  bucket = aws_s3_bucket.cache[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Eviction by age from the upload (S3 has no "last read"), and the parts
# of multipart uploads a stopped pod left behind, which S3 bills as
# storage until they are aborted.
resource "aws_s3_bucket_lifecycle_configuration" "cache" {
  count  = local.s3_tier
  bucket = aws_s3_bucket.cache[0].id

  rule {
    id     = "cacheyd-expire"
    status = "Enabled"

    filter {
      prefix = var.s3_prefix
    }

    expiration {
      days = var.s3_expire_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "cacheyd_s3" {
  count = local.s3_tier

  # Read, conditional create, multipart upload and its abort, under the
  # prefix only; no delete.
  statement {
    sid = "CacheydObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.cache[0].arn}/${var.s3_prefix}*"]
  }

  # Without s3:ListBucket, S3 answers a HEAD or GET of a missing key with
  # 403, which cacheyd would count as refused credentials rather than as a
  # miss. IfExists: the permission S3 checks for a missing key must pass
  # whether or not that check carries an s3:prefix; a listing that names a
  # prefix is held to cacheyd's (one that names none is allowed: the
  # bucket is cacheyd's own). cacheyd itself never lists.
  statement {
    sid       = "CacheydMissesAre404"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.cache[0].arn]

    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.s3_prefix}*"]
    }
  }
}

resource "aws_iam_policy" "cacheyd_s3" {
  count       = local.s3_tier
  name_prefix = "${substr(var.cluster_name, 0, 64)}-cacheyd-s3-"
  description = "cacheyd's objects in its bucket: read, upload, no delete."
  policy      = data.aws_iam_policy_document.cacheyd_s3[0].json
}

# IRSA: the cluster's OIDC provider vouches for the pod's projected token,
# and the role trusts cacheyd's service account alone.
data "aws_eks_cluster" "this" {
  count = local.irsa
  name  = var.cluster_name
}

data "aws_iam_openid_connect_provider" "this" {
  count = local.irsa
  url   = data.aws_eks_cluster.this[0].identity[0].oidc[0].issuer
}

data "aws_iam_policy_document" "cacheyd_assume" {
  count = local.s3_tier

  dynamic "statement" {
    for_each = data.aws_iam_openid_connect_provider.this
    content {
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value.arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${replace(statement.value.url, "https://", "")}:sub"
        values   = ["system:serviceaccount:${var.cacheyd_namespace}:${var.cacheyd_service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${replace(statement.value.url, "https://", "")}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = range(local.pod_id)
    content {
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "cacheyd_s3" {
  count              = local.s3_tier
  name_prefix        = "${substr(var.cluster_name, 0, 26)}-cacheyd-"
  description        = "cacheyd's service account ${var.cacheyd_namespace}/${var.cacheyd_service_account}: its bucket."
  assume_role_policy = data.aws_iam_policy_document.cacheyd_assume[0].json
}

resource "aws_iam_role_policy_attachment" "cacheyd_s3" {
  count      = local.s3_tier
  role       = aws_iam_role.cacheyd_s3[0].name
  policy_arn = aws_iam_policy.cacheyd_s3[0].arn
}

# Pod Identity: EKS hands the role to pods of this service account; no
# annotation needed.
resource "aws_eks_pod_identity_association" "cacheyd" {
  count           = local.pod_id
  cluster_name    = var.cluster_name
  namespace       = var.cacheyd_namespace
  service_account = var.cacheyd_service_account
  role_arn        = aws_iam_role.cacheyd_s3[0].arn
}
