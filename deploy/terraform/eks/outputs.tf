output "node_groups" {
  description = "The node groups that pull through cacheyd."
  value = concat(
    [aws_eks_node_group.al2023.node_group_name],
    aws_eks_node_group.bottlerocket[*].node_group_name,
  )
}
