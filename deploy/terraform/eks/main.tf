# Node groups whose containerd uses cacheyd as a mirror for every registry,
# falling back to the registry itself whenever cacheyd cannot be reached.
# Install cacheyd in the cluster first (deploy/kubernetes or deploy/helm);
# nodes that boot before it is ready simply pull from the registries.

# Amazon Linux 2023: the AMI's containerd already reads
# /etc/containerd/certs.d (config_path), so the user data only writes
# _default/hosts.toml. EKS merges this MIME part with its own node
# configuration, as the launch template sets no AMI. That config_path lists
# two directories, which containerd 2.1 and 2.2 take as no mirrors at all:
# see docs/containerd.md (EKS) for the NodeConfig override on those AMIs.
resource "aws_launch_template" "al2023" {
  name_prefix = "${var.cluster_name}-cacheyd-al2023-"
  user_data = base64encode(templatefile("${path.module}/al2023-user-data.tftpl", {
    cacheyd_url  = var.cacheyd_url
    dial_timeout = var.dial_timeout
  }))

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name = "${var.cluster_name}-cacheyd-al2023"
    }
  }
}

resource "aws_eks_node_group" "al2023" {
  cluster_name    = var.cluster_name
  node_group_name = "cacheyd-al2023"
  node_role_arn   = var.node_role_arn
  subnet_ids      = var.subnet_ids
  ami_type        = "AL2023_x86_64_STANDARD"
  instance_types  = var.instance_types

  launch_template {
    id      = aws_launch_template.al2023.id
    version = aws_launch_template.al2023.latest_version
  }

  scaling_config {
    min_size     = var.scaling.min
    desired_size = var.scaling.desired
    max_size     = var.scaling.max
  }

  update_config {
    max_unavailable = 1
  }
}

# Bottlerocket: user data is TOML settings, merged by EKS with the cluster's.
resource "aws_launch_template" "bottlerocket" {
  count       = var.bottlerocket ? 1 : 0
  name_prefix = "${var.cluster_name}-cacheyd-bottlerocket-"
  user_data = base64encode(templatefile("${path.module}/bottlerocket-settings.toml.tftpl", {
    cacheyd_url = var.cacheyd_url
  }))

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

resource "aws_eks_node_group" "bottlerocket" {
  count           = var.bottlerocket ? 1 : 0
  cluster_name    = var.cluster_name
  node_group_name = "cacheyd-bottlerocket"
  node_role_arn   = var.node_role_arn
  subnet_ids      = var.subnet_ids
  ami_type        = "BOTTLEROCKET_x86_64"
  instance_types  = var.instance_types

  launch_template {
    id      = aws_launch_template.bottlerocket[0].id
    version = aws_launch_template.bottlerocket[0].latest_version
  }

  scaling_config {
    min_size     = var.scaling.min
    desired_size = var.scaling.desired
    max_size     = var.scaling.max
  }

  update_config {
    max_unavailable = 1
  }
}
