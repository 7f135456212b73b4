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
