variable "cluster_name" {
  description = "The EKS cluster the node groups join."
  type        = string
}

variable "node_role_arn" {
  description = "IAM role of the nodes (AmazonEKSWorkerNodePolicy, AmazonEKS_CNI_Policy, AmazonEC2ContainerRegistryReadOnly)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the nodes run in."
  type        = list(string)
}

variable "instance_types" {
  description = "Instance types of the node groups."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "scaling" {
  description = "Node count of each node group."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = {
    min     = 1
    desired = 2
    max     = 10
  }
}

variable "cacheyd_url" {
  description = "Where each node's containerd finds cacheyd: the NodePort (or the DaemonSet's hostPort) on the node itself."
  type        = string
  default     = "http://localhost:30123"

  validation {
    condition     = can(regex("^https?://[^/]+$", var.cacheyd_url))
    error_message = "cacheyd_url must be http(s)://host[:port] without a path."
  }
}

variable "dial_timeout" {
  description = "How long containerd waits to connect to cacheyd before it falls back to the registry (honoured by containerd 2.1 and later)."
  type        = string
  default     = "1s"
}

variable "bottlerocket" {
  description = "Also create a Bottlerocket node group configured the same way."
  type        = bool
  default     = false
}

variable "enable_s3_tier" {
  description = "Create a bucket behind cacheyd's replicas (docs/storage.md), its IAM policy and a role for cacheyd's service account."
  type        = bool
  default     = false
}

variable "s3_bucket_name" {
  description = "The bucket's name; empty: a unique name starting with <cluster_name>-cacheyd-."
  type        = string
  default     = ""
}

variable "s3_prefix" {
  description = "The prefix of cacheyd's objects in the bucket (--s3-prefix): the policy and the lifecycle rule cover it alone."
  type        = string
  default     = "cacheyd/"

  validation {
    condition     = can(regex("^([^/*]+/)+$", var.s3_prefix))
    error_message = "s3_prefix must be one or more path segments ending in a slash, e.g. cacheyd/."
  }
}

variable "s3_expire_days" {
  description = "Days after its upload an object is deleted by the bucket's lifecycle rule (cacheyd itself never deletes): a blob still in use is fetched from upstream once more after that."
  type        = number
  default     = 30

  validation {
    condition     = var.s3_expire_days >= 1
    error_message = "s3_expire_days must be at least 1."
  }
}

variable "s3_credentials" {
  description = "How cacheyd's pods get the role: irsa (the service account's eks.amazonaws.com/role-arn annotation; the cluster needs its IAM OIDC provider) or pod-identity (an EKS Pod Identity association; the cluster needs the eks-pod-identity-agent add-on)."
  type        = string
  default     = "irsa"

  validation {
    condition     = contains(["irsa", "pod-identity"], var.s3_credentials)
    error_message = "s3_credentials must be irsa or pod-identity."
  }
}

variable "cacheyd_namespace" {
  description = "The namespace cacheyd runs in: the role trusts its service account alone."
  type        = string
  default     = "cacheyd"
}

variable "cacheyd_service_account" {
  description = "cacheyd's service account: the chart's and the manifests' is cacheyd (a Helm release of another name: <release>-cacheyd)."
  type        = string
  default     = "cacheyd"
}
