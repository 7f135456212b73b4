output "node_groups" {
  description = "The node groups that pull through cacheyd."
  value = concat(
    [aws_eks_node_group.al2023.node_group_name],
    aws_eks_node_group.bottlerocket[*].node_group_name,
  )
}

output "s3_bucket" {
  description = "cacheyd's bucket (enable_s3_tier): --s3-bucket, the chart's s3.bucket."
  value       = one(aws_s3_bucket.cache[*].bucket)
}

output "s3_region" {
  description = "The bucket's region: --s3-region, the chart's s3.region."
  value       = one(aws_s3_bucket.cache[*].region)
}

output "s3_role_arn" {
  description = "The role cacheyd's service account uses for the bucket: with IRSA, its eks.amazonaws.com/role-arn annotation (the chart's serviceAccount.annotations)."
  value       = one(aws_iam_role.cacheyd_s3[*].arn)
}
