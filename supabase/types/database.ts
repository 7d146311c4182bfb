
export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[]

export type Database = {
  
  "public": {
          Tables: {
            "api_keys": {
                  Row: {
                    "allowed_ips": (unknown)[] | null,"budget_period_start": string | null,"budget_reserved": number,"budget_spent": number,"created_at": string,"created_by": string | null,"credit_limit": number | null,"credit_limit_period": string,"description": string | null,"expires_at": string | null,"id": string,"key_hash": string,"last_used_at": string | null,"models": (string)[] | null,"name": string,"org_id": string,"prefix": string,"previous_key_expires_at": string | null,"previous_key_hash": string | null,"project_id": string | null,"rate_requests": number,"rate_tokens": number,"rate_window_start": string | null,"revoked_at": string | null,"revoked_by": string | null,"rotated_at": string | null,"rpm": number | null,"status": string,"tier": string,"tpm": number | null,"unkey_key_id": string | null,"updated_at": string,"usage_count": number
                  }
                  ComputedFields: never
                  Insert: {
                    "allowed_ips"?: (unknown)[] | null,"budget_period_start"?: string | null,"budget_reserved"?: number,"budget_spent"?: number,"created_at"?: string,"created_by"?: string | null,"credit_limit"?: number | null,"credit_limit_period"?: string,"description"?: string | null,"expires_at"?: string | null,"id"?: string,"key_hash": string,"last_used_at"?: string | null,"models"?: (string)[] | null,"name": string,"org_id": string,"prefix": string,"previous_key_expires_at"?: string | null,"previous_key_hash"?: string | null,"project_id"?: string | null,"rate_requests"?: number,"rate_tokens"?: number,"rate_window_start"?: string | null,"revoked_at"?: string | null,"revoked_by"?: string | null,"rotated_at"?: string | null,"rpm"?: number | null,"status"?: string,"tier"?: string,"tpm"?: number | null,"unkey_key_id"?: string | null,"updated_at"?: string,"usage_count"?: number
                  }
                  Update: {
                    "allowed_ips"?: (unknown)[] | null,"budget_period_start"?: string | null,"budget_reserved"?: number,"budget_spent"?: number,"created_at"?: string,"created_by"?: string | null,"credit_limit"?: number | null,"credit_limit_period"?: string,"description"?: string | null,"expires_at"?: string | null,"id"?: string,"key_hash"?: string,"last_used_at"?: string | null,"models"?: (string)[] | null,"name"?: string,"org_id"?: string,"prefix"?: string,"previous_key_expires_at"?: string | null,"previous_key_hash"?: string | null,"project_id"?: string | null,"rate_requests"?: number,"rate_tokens"?: number,"rate_window_start"?: string | null,"revoked_at"?: string | null,"revoked_by"?: string | null,"rotated_at"?: string | null,"rpm"?: number | null,"status"?: string,"tier"?: string,"tpm"?: number | null,"unkey_key_id"?: string | null,"updated_at"?: string,"usage_count"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "api_keys_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "api_keys_project_id_fkey"
      columns: ["project_id"]
isOneToOne: false
      referencedRelation: "projects"
      referencedColumns: ["id"]
    }
                  ]
                },"api_requests": {
                  Row: {
                    "api_key_id": string | null,"created_at": string,"endpoint": string,"id": number,"latency_ms": number | null,"method": string,"org_id": string,"request_body": Json | null,"request_id": string,"response_body": Json | null,"status_code": number,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "api_key_id"?: string | null,"created_at"?: string,"endpoint": string,"id"?: never,"latency_ms"?: number | null,"method": string,"org_id": string,"request_body"?: Json | null,"request_id": string,"response_body"?: Json | null,"status_code": number,"user_id"?: string | null
                  }
                  Update: {
                    "api_key_id"?: string | null,"created_at"?: string,"endpoint"?: string,"id"?: never,"latency_ms"?: number | null,"method"?: string,"org_id"?: string,"request_body"?: Json | null,"request_id"?: string,"response_body"?: Json | null,"status_code"?: number,"user_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "api_requests_api_key_id_fkey"
      columns: ["api_key_id"]
isOneToOne: false
      referencedRelation: "api_keys"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "api_requests_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_accounts": {
                  Row: {
                    "balance": number,"holds_lapse_at": string | null,"org_id": string,"period_end": string | null,"period_start": string | null,"reserved": number,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "balance"?: number,"holds_lapse_at"?: string | null,"org_id": string,"period_end"?: string | null,"period_start"?: string | null,"reserved"?: number,"updated_at"?: string
                  }
                  Update: {
                    "balance"?: number,"holds_lapse_at"?: string | null,"org_id"?: string,"period_end"?: string | null,"period_start"?: string | null,"reserved"?: number,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_accounts_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_grants": {
                  Row: {
                    "amount": number,"created_at": string,"description": string | null,"expired_at": string | null,"expires_at": string | null,"external_id": string | null,"has_remaining": boolean | null,"id": number,"kind": Database["public"]['Enums']["credit_grant_kind"],"org_id": string,"remaining": number
                  }
                  ComputedFields: never
                  Insert: {
                    "amount": number,"created_at"?: string,"description"?: string | null,"expired_at"?: string | null,"expires_at"?: string | null,"external_id"?: string | null,"has_remaining"?: never,"id"?: never,"kind": Database["public"]['Enums']["credit_grant_kind"],"org_id": string,"remaining": number
                  }
                  Update: {
                    "amount"?: number,"created_at"?: string,"description"?: string | null,"expired_at"?: string | null,"expires_at"?: string | null,"external_id"?: string | null,"has_remaining"?: never,"id"?: never,"kind"?: Database["public"]['Enums']["credit_grant_kind"],"org_id"?: string,"remaining"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_grants_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_ledger": {
                  Row: {
                    "amount": number,"balance_after": number,"created_at": string,"description": string | null,"grant_id": number | null,"id": number,"kind": Database["public"]['Enums']["credit_entry_kind"],"org_id": string,"request_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "amount": number,"balance_after": number,"created_at"?: string,"description"?: string | null,"grant_id"?: number | null,"id"?: never,"kind": Database["public"]['Enums']["credit_entry_kind"],"org_id": string,"request_id"?: string | null
                  }
                  Update: {
                    "amount"?: number,"balance_after"?: number,"created_at"?: string,"description"?: string | null,"grant_id"?: number | null,"id"?: never,"kind"?: Database["public"]['Enums']["credit_entry_kind"],"org_id"?: string,"request_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_ledger_grant_id_fkey"
      columns: ["grant_id"]
isOneToOne: false
      referencedRelation: "credit_grants"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "credit_ledger_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_reservations": {
                  Row: {
                    "amount": number,"api_key_id": string | null,"charged": number | null,"closed_at": string | null,"created_at": string,"expires_at": string,"key_budgeted": boolean,"key_tokens": number | null,"lapsed": boolean,"org_id": string,"rate_window_start": string | null,"request_id": string,"status": string,"used_tokens": number | null
                  }
                  ComputedFields: never
                  Insert: {
                    "amount": number,"api_key_id"?: string | null,"charged"?: number | null,"closed_at"?: string | null,"created_at"?: string,"expires_at": string,"key_budgeted"?: boolean,"key_tokens"?: number | null,"lapsed"?: boolean,"org_id": string,"rate_window_start"?: string | null,"request_id": string,"status"?: string,"used_tokens"?: number | null
                  }
                  Update: {
                    "amount"?: number,"api_key_id"?: string | null,"charged"?: number | null,"closed_at"?: string | null,"created_at"?: string,"expires_at"?: string,"key_budgeted"?: boolean,"key_tokens"?: number | null,"lapsed"?: boolean,"org_id"?: string,"rate_window_start"?: string | null,"request_id"?: string,"status"?: string,"used_tokens"?: number | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_reservations_api_key_id_fkey"
      columns: ["api_key_id"]
isOneToOne: false
      referencedRelation: "api_keys"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "credit_reservations_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"daily_events": {
                  Row: {
                    "attempts": number,"error": string | null,"event_ts": string | null,"id": string,"meeting_id": string | null,"payload": NonNullable<Json>,"received_at": string,"recording_id": string | null,"room_name": string | null,"status": Database["public"]['Enums']["daily_event_status"],"type": string
                  }
                  ComputedFields: never
                  Insert: {
                    "attempts"?: number,"error"?: string | null,"event_ts"?: string | null,"id": string,"meeting_id"?: string | null,"payload": NonNullable<Json>,"received_at"?: string,"recording_id"?: string | null,"room_name"?: string | null,"status": Database["public"]['Enums']["daily_event_status"],"type": string
                  }
                  Update: {
                    "attempts"?: number,"error"?: string | null,"event_ts"?: string | null,"id"?: string,"meeting_id"?: string | null,"payload"?: NonNullable<Json>,"received_at"?: string,"recording_id"?: string | null,"room_name"?: string | null,"status"?: Database["public"]['Enums']["daily_event_status"],"type"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "daily_events_meeting_id_fkey"
      columns: ["meeting_id"]
isOneToOne: false
      referencedRelation: "meetings"
      referencedColumns: ["id"]
    }
                  ]
                },"invitations": {
                  Row: {
                    "accepted_at": string | null,"accepted_by": string | null,"created_at": string,"email": string,"expires_at": string,"id": string,"invited_by": string | null,"org_id": string,"role": Database["public"]['Enums']["member_role"],"token_hash": string,"voided_at": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "accepted_at"?: string | null,"accepted_by"?: string | null,"created_at"?: string,"email": string,"expires_at"?: string,"id"?: string,"invited_by"?: string | null,"org_id": string,"role"?: Database["public"]['Enums']["member_role"],"token_hash": string,"voided_at"?: string | null
                  }
                  Update: {
                    "accepted_at"?: string | null,"accepted_by"?: string | null,"created_at"?: string,"email"?: string,"expires_at"?: string,"id"?: string,"invited_by"?: string | null,"org_id"?: string,"role"?: Database["public"]['Enums']["member_role"],"token_hash"?: string,"voided_at"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "invitations_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"meetings": {
                  Row: {
                    "cancelled_at": string | null,"created_at": string,"created_by": string | null,"daily_meeting_id": string | null,"daily_room_id": string | null,"duration_seconds": number | null,"enable_recording": boolean,"enable_transcription": boolean,"ended_at": string | null,"expires_at": string | null,"id": string,"max_participants": number | null,"metadata": NonNullable<Json>,"org_id": string,"privacy": string,"recording_id": string | null,"recording_status": string | null,"recording_url": string | null,"room_name": string,"room_url": string | null,"scheduled_for": string | null,"started_at": string | null,"status": Database["public"]['Enums']["meeting_status"],"transcript_id": string | null,"transcript_status": string | null,"transcript_url": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "cancelled_at"?: string | null,"created_at"?: string,"created_by"?: string | null,"daily_meeting_id"?: string | null,"daily_room_id"?: string | null,"duration_seconds"?: number | null,"enable_recording"?: boolean,"enable_transcription"?: boolean,"ended_at"?: string | null,"expires_at"?: string | null,"id"?: string,"max_participants"?: number | null,"metadata"?: NonNullable<Json>,"org_id": string,"privacy"?: string,"recording_id"?: string | null,"recording_status"?: string | null,"recording_url"?: string | null,"room_name": string,"room_url"?: string | null,"scheduled_for"?: string | null,"started_at"?: string | null,"status"?: Database["public"]['Enums']["meeting_status"],"transcript_id"?: string | null,"transcript_status"?: string | null,"transcript_url"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "cancelled_at"?: string | null,"created_at"?: string,"created_by"?: string | null,"daily_meeting_id"?: string | null,"daily_room_id"?: string | null,"duration_seconds"?: number | null,"enable_recording"?: boolean,"enable_transcription"?: boolean,"ended_at"?: string | null,"expires_at"?: string | null,"id"?: string,"max_participants"?: number | null,"metadata"?: NonNullable<Json>,"org_id"?: string,"privacy"?: string,"recording_id"?: string | null,"recording_status"?: string | null,"recording_url"?: string | null,"room_name"?: string,"room_url"?: string | null,"scheduled_for"?: string | null,"started_at"?: string | null,"status"?: Database["public"]['Enums']["meeting_status"],"transcript_id"?: string | null,"transcript_status"?: string | null,"transcript_url"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "meetings_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"model_prices": {
                  Row: {
                    "active": boolean,"cached_input_usd_per_1m": number,"created_at": string,"credit_multiplier": number,"input_usd_per_1m": number,"max_output_tokens": number,"model": string,"output_usd_per_1m": number,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "active"?: boolean,"cached_input_usd_per_1m": number,"created_at"?: string,"credit_multiplier"?: number,"input_usd_per_1m": number,"max_output_tokens"?: number,"model": string,"output_usd_per_1m": number,"updated_at"?: string
                  }
                  Update: {
                    "active"?: boolean,"cached_input_usd_per_1m"?: number,"created_at"?: string,"credit_multiplier"?: number,"input_usd_per_1m"?: number,"max_output_tokens"?: number,"model"?: string,"output_usd_per_1m"?: number,"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"organization_members": {
                  Row: {
                    "created_at": string,"org_id": string,"role": Database["public"]['Enums']["member_role"],"updated_at": string,"user_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"org_id": string,"role"?: Database["public"]['Enums']["member_role"],"updated_at"?: string,"user_id": string
                  }
                  Update: {
                    "created_at"?: string,"org_id"?: string,"role"?: Database["public"]['Enums']["member_role"],"updated_at"?: string,"user_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "organization_members_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"organizations": {
                  Row: {
                    "billing_status": Database["public"]['Enums']["billing_status"],"created_at": string,"created_by": string | null,"id": string,"name": string,"personal": boolean,"personal_owner_id": string | null,"plan_id": string,"slug": string,"stripe_customer_id": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "billing_status"?: Database["public"]['Enums']["billing_status"],"created_at"?: string,"created_by"?: string | null,"id"?: string,"name": string,"personal"?: boolean,"personal_owner_id"?: string | null,"plan_id"?: string,"slug": string,"stripe_customer_id"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "billing_status"?: Database["public"]['Enums']["billing_status"],"created_at"?: string,"created_by"?: string | null,"id"?: string,"name"?: string,"personal"?: boolean,"personal_owner_id"?: string | null,"plan_id"?: string,"slug"?: string,"stripe_customer_id"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "organizations_plan_id_fkey"
      columns: ["plan_id"]
isOneToOne: false
      referencedRelation: "plans"
      referencedColumns: ["id"]
    }
                  ]
                },"participants": {
                  Row: {
                    "created_at": string,"daily_participant_id": string,"daily_user_id": string | null,"duration_seconds": number | null,"email": string | null,"id": string,"joined_at": string | null,"left_at": string | null,"meeting_id": string,"name": string | null,"org_id": string,"role": Database["public"]['Enums']["participant_role"],"updated_at": string,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"daily_participant_id": string,"daily_user_id"?: string | null,"duration_seconds"?: number | null,"email"?: string | null,"id"?: string,"joined_at"?: string | null,"left_at"?: string | null,"meeting_id": string,"name"?: string | null,"org_id": string,"role"?: Database["public"]['Enums']["participant_role"],"updated_at"?: string,"user_id"?: string | null
                  }
                  Update: {
                    "created_at"?: string,"daily_participant_id"?: string,"daily_user_id"?: string | null,"duration_seconds"?: number | null,"email"?: string | null,"id"?: string,"joined_at"?: string | null,"left_at"?: string | null,"meeting_id"?: string,"name"?: string | null,"org_id"?: string,"role"?: Database["public"]['Enums']["participant_role"],"updated_at"?: string,"user_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "participants_org_id_meeting_id_fkey"
      columns: ["org_id","meeting_id"]
isOneToOne: false
      referencedRelation: "meetings"
      referencedColumns: ["org_id","id"]
    }
                  ]
                },"payments": {
                  Row: {
                    "amount": number,"amount_paid": number,"billing_reason": string | null,"created_at": string | null,"currency": string | null,"customer_id": string | null,"description": string | null,"failure_message": string | null,"hosted_invoice_url": string | null,"id": string,"kind": string,"last_event_id": string | null,"org_id": string | null,"period_end": string | null,"period_start": string | null,"status": string,"stripe_data": NonNullable<Json>,"subscription_id": string | null,"synced_at": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "amount"?: number,"amount_paid"?: number,"billing_reason"?: string | null,"created_at"?: string | null,"currency"?: string | null,"customer_id"?: string | null,"description"?: string | null,"failure_message"?: string | null,"hosted_invoice_url"?: string | null,"id": string,"kind": string,"last_event_id"?: string | null,"org_id"?: string | null,"period_end"?: string | null,"period_start"?: string | null,"status": string,"stripe_data": NonNullable<Json>,"subscription_id"?: string | null,"synced_at": string,"updated_at"?: string
                  }
                  Update: {
                    "amount"?: number,"amount_paid"?: number,"billing_reason"?: string | null,"created_at"?: string | null,"currency"?: string | null,"customer_id"?: string | null,"description"?: string | null,"failure_message"?: string | null,"hosted_invoice_url"?: string | null,"id"?: string,"kind"?: string,"last_event_id"?: string | null,"org_id"?: string | null,"period_end"?: string | null,"period_start"?: string | null,"status"?: string,"stripe_data"?: NonNullable<Json>,"subscription_id"?: string | null,"synced_at"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "payments_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"plans": {
                  Row: {
                    "created_at": string,"features": NonNullable<Json>,"id": string,"monthly_credits": number,"name": string,"sort_order": number,"stripe_product_id": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"features"?: NonNullable<Json>,"id": string,"monthly_credits": number,"name": string,"sort_order"?: number,"stripe_product_id"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "created_at"?: string,"features"?: NonNullable<Json>,"id"?: string,"monthly_credits"?: number,"name"?: string,"sort_order"?: number,"stripe_product_id"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"profiles": {
                  Row: {
                    "avatar_url": string | null,"company": string | null,"created_at": string,"email": string | null,"full_name": string | null,"id": string,"is_active": boolean,"last_sign_in_at": string | null,"role": Database["public"]['Enums']["user_role"],"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "avatar_url"?: string | null,"company"?: string | null,"created_at"?: string,"email"?: string | null,"full_name"?: string | null,"id": string,"is_active"?: boolean,"last_sign_in_at"?: string | null,"role"?: Database["public"]['Enums']["user_role"],"updated_at"?: string
                  }
                  Update: {
                    "avatar_url"?: string | null,"company"?: string | null,"created_at"?: string,"email"?: string | null,"full_name"?: string | null,"id"?: string,"is_active"?: boolean,"last_sign_in_at"?: string | null,"role"?: Database["public"]['Enums']["user_role"],"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"projects": {
                  Row: {
                    "archived_at": string | null,"created_at": string,"created_by": string | null,"description": string | null,"id": string,"name": string,"org_id": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "archived_at"?: string | null,"created_at"?: string,"created_by"?: string | null,"description"?: string | null,"id"?: string,"name": string,"org_id": string,"updated_at"?: string
                  }
                  Update: {
                    "archived_at"?: string | null,"created_at"?: string,"created_by"?: string | null,"description"?: string | null,"id"?: string,"name"?: string,"org_id"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "projects_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"rooms": {
                  Row: {
                    "created_at": string,"key_id": string | null,"meeting_id": string,"org_id": string,"secrets": NonNullable<Json>,"state": NonNullable<Json>,"updated_at": string,"updated_by": string | null,"version": number
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"key_id"?: string | null,"meeting_id": string,"org_id": string,"secrets"?: NonNullable<Json>,"state"?: NonNullable<Json>,"updated_at"?: string,"updated_by"?: string | null,"version"?: number
                  }
                  Update: {
                    "created_at"?: string,"key_id"?: string | null,"meeting_id"?: string,"org_id"?: string,"secrets"?: NonNullable<Json>,"state"?: NonNullable<Json>,"updated_at"?: string,"updated_by"?: string | null,"version"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "rooms_org_id_meeting_id_fkey"
      columns: ["org_id","meeting_id"]
isOneToOne: false
      referencedRelation: "meetings"
      referencedColumns: ["org_id","id"]
    }
                  ]
                },"stripe_customers": {
                  Row: {
                    "created_at": string | null,"deleted_at": string | null,"email": string | null,"id": string,"last_event_id": string | null,"metadata": NonNullable<Json>,"name": string | null,"org_id": string | null,"stripe_data": Json | null,"synced_at": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string | null,"deleted_at"?: string | null,"email"?: string | null,"id": string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"name"?: string | null,"org_id"?: string | null,"stripe_data"?: Json | null,"synced_at"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "created_at"?: string | null,"deleted_at"?: string | null,"email"?: string | null,"id"?: string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"name"?: string | null,"org_id"?: string | null,"stripe_data"?: Json | null,"synced_at"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "stripe_customers_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"stripe_events": {
                  Row: {
                    "api_version": string | null,"attempts": number,"created": string,"error": string | null,"id": string,"livemode": boolean,"object_id": string | null,"processed_at": string | null,"received_at": string,"status": Database["public"]['Enums']["stripe_event_status"],"type": string
                  }
                  ComputedFields: never
                  Insert: {
                    "api_version"?: string | null,"attempts"?: number,"created": string,"error"?: string | null,"id": string,"livemode"?: boolean,"object_id"?: string | null,"processed_at"?: string | null,"received_at"?: string,"status": Database["public"]['Enums']["stripe_event_status"],"type": string
                  }
                  Update: {
                    "api_version"?: string | null,"attempts"?: number,"created"?: string,"error"?: string | null,"id"?: string,"livemode"?: boolean,"object_id"?: string | null,"processed_at"?: string | null,"received_at"?: string,"status"?: Database["public"]['Enums']["stripe_event_status"],"type"?: string
                  }
                  Relationships: [
                    
                  ]
                },"stripe_meter_reports": {
                  Row: {
                    "answer": Json | null,"attempts": number,"claimed_at": string | null,"created_at": string,"customer_id": string,"error": string | null,"event_name": string,"http_status": number | null,"id": number,"identifier": string,"org_id": string,"reported_at": string | null,"seq": number,"status": string,"subscription_id": string | null,"value": number,"window_end": string,"window_start": string
                  }
                  ComputedFields: never
                  Insert: {
                    "answer"?: Json | null,"attempts"?: number,"claimed_at"?: string | null,"created_at"?: string,"customer_id": string,"error"?: string | null,"event_name": string,"http_status"?: number | null,"id"?: never,"identifier": string,"org_id": string,"reported_at"?: string | null,"seq"?: number,"status"?: string,"subscription_id"?: string | null,"value": number,"window_end": string,"window_start": string
                  }
                  Update: {
                    "answer"?: Json | null,"attempts"?: number,"claimed_at"?: string | null,"created_at"?: string,"customer_id"?: string,"error"?: string | null,"event_name"?: string,"http_status"?: number | null,"id"?: never,"identifier"?: string,"org_id"?: string,"reported_at"?: string | null,"seq"?: number,"status"?: string,"subscription_id"?: string | null,"value"?: number,"window_end"?: string,"window_start"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "stripe_meter_reports_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"stripe_prices": {
                  Row: {
                    "active": boolean,"created_at": string | null,"currency": string,"deleted_at": string | null,"id": string,"last_event_id": string | null,"lookup_key": string | null,"metadata": NonNullable<Json>,"nickname": string | null,"product_id": string,"recurring_interval": string | null,"recurring_interval_count": number | null,"stripe_data": NonNullable<Json>,"synced_at": string,"type": string,"unit_amount": number | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "active"?: boolean,"created_at"?: string | null,"currency": string,"deleted_at"?: string | null,"id": string,"last_event_id"?: string | null,"lookup_key"?: string | null,"metadata"?: NonNullable<Json>,"nickname"?: string | null,"product_id": string,"recurring_interval"?: string | null,"recurring_interval_count"?: number | null,"stripe_data": NonNullable<Json>,"synced_at": string,"type": string,"unit_amount"?: number | null,"updated_at"?: string
                  }
                  Update: {
                    "active"?: boolean,"created_at"?: string | null,"currency"?: string,"deleted_at"?: string | null,"id"?: string,"last_event_id"?: string | null,"lookup_key"?: string | null,"metadata"?: NonNullable<Json>,"nickname"?: string | null,"product_id"?: string,"recurring_interval"?: string | null,"recurring_interval_count"?: number | null,"stripe_data"?: NonNullable<Json>,"synced_at"?: string,"type"?: string,"unit_amount"?: number | null,"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"stripe_products": {
                  Row: {
                    "active": boolean,"created_at": string | null,"deleted_at": string | null,"description": string | null,"id": string,"last_event_id": string | null,"metadata": NonNullable<Json>,"name": string | null,"plan_id": string | null,"stripe_data": NonNullable<Json>,"synced_at": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "active"?: boolean,"created_at"?: string | null,"deleted_at"?: string | null,"description"?: string | null,"id": string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"name"?: string | null,"plan_id"?: string | null,"stripe_data": NonNullable<Json>,"synced_at": string,"updated_at"?: string
                  }
                  Update: {
                    "active"?: boolean,"created_at"?: string | null,"deleted_at"?: string | null,"description"?: string | null,"id"?: string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"name"?: string | null,"plan_id"?: string | null,"stripe_data"?: NonNullable<Json>,"synced_at"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "stripe_products_plan_id_fkey"
      columns: ["plan_id"]
isOneToOne: false
      referencedRelation: "plans"
      referencedColumns: ["id"]
    }
                  ]
                },"subscriptions": {
                  Row: {
                    "cancel_at": string | null,"cancel_at_period_end": boolean,"canceled_at": string | null,"created_at": string | null,"current_period_end": string | null,"current_period_start": string | null,"customer_id": string,"ended_at": string | null,"id": string,"last_event_id": string | null,"metadata": NonNullable<Json>,"org_id": string | null,"price_id": string | null,"product_id": string | null,"quantity": number | null,"status": Database["public"]['Enums']["subscription_status"],"stripe_data": NonNullable<Json>,"synced_at": string,"trial_end": string | null,"trial_start": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "cancel_at"?: string | null,"cancel_at_period_end"?: boolean,"canceled_at"?: string | null,"created_at"?: string | null,"current_period_end"?: string | null,"current_period_start"?: string | null,"customer_id": string,"ended_at"?: string | null,"id": string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"org_id"?: string | null,"price_id"?: string | null,"product_id"?: string | null,"quantity"?: number | null,"status": Database["public"]['Enums']["subscription_status"],"stripe_data": NonNullable<Json>,"synced_at": string,"trial_end"?: string | null,"trial_start"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "cancel_at"?: string | null,"cancel_at_period_end"?: boolean,"canceled_at"?: string | null,"created_at"?: string | null,"current_period_end"?: string | null,"current_period_start"?: string | null,"customer_id"?: string,"ended_at"?: string | null,"id"?: string,"last_event_id"?: string | null,"metadata"?: NonNullable<Json>,"org_id"?: string | null,"price_id"?: string | null,"product_id"?: string | null,"quantity"?: number | null,"status"?: Database["public"]['Enums']["subscription_status"],"stripe_data"?: NonNullable<Json>,"synced_at"?: string,"trial_end"?: string | null,"trial_start"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "subscriptions_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"trials": {
                  Row: {
                    "cancelled_at": string | null,"converted_at": string | null,"created_at": string,"credits": number,"expired_at": string | null,"expires_at": string,"id": string,"name": string,"org_id": string,"owner_id": string | null,"slug": string,"status": string,"tier": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "cancelled_at"?: string | null,"converted_at"?: string | null,"created_at"?: string,"credits": number,"expired_at"?: string | null,"expires_at": string,"id"?: string,"name": string,"org_id": string,"owner_id"?: string | null,"slug": string,"status"?: string,"tier": string,"updated_at"?: string
                  }
                  Update: {
                    "cancelled_at"?: string | null,"converted_at"?: string | null,"created_at"?: string,"credits"?: number,"expired_at"?: string | null,"expires_at"?: string,"id"?: string,"name"?: string,"org_id"?: string,"owner_id"?: string | null,"slug"?: string,"status"?: string,"tier"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "trials_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"usage_daily": {
                  Row: {
                    "api_key_id": string | null,"cached_tokens": number,"completion_tokens": number,"cost_usd": number,"credits": number,"day": string,"hour": number,"kind": string,"model": string | null,"org_id": string,"project_id": string | null,"prompt_tokens": number,"reasoning_tokens": number,"requests": number,"status_class": string,"total_tokens": number,"updated_at": string,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "api_key_id"?: string | null,"cached_tokens"?: number,"completion_tokens"?: number,"cost_usd"?: number,"credits"?: number,"day": string,"hour": number,"kind": string,"model"?: string | null,"org_id": string,"project_id"?: string | null,"prompt_tokens"?: number,"reasoning_tokens"?: number,"requests"?: number,"status_class": string,"total_tokens"?: number,"updated_at"?: string,"user_id"?: string | null
                  }
                  Update: {
                    "api_key_id"?: string | null,"cached_tokens"?: number,"completion_tokens"?: number,"cost_usd"?: number,"credits"?: number,"day"?: string,"hour"?: number,"kind"?: string,"model"?: string | null,"org_id"?: string,"project_id"?: string | null,"prompt_tokens"?: number,"reasoning_tokens"?: number,"requests"?: number,"status_class"?: string,"total_tokens"?: number,"updated_at"?: string,"user_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "usage_daily_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                },"usage_events": {
                  Row: {
                    "api_key_id": string | null,"cached_tokens": number,"completion_tokens": number,"cost_usd": number,"created_at": string,"credits": number,"estimated": boolean,"id": string,"kind": string,"latency_ms": number | null,"meeting_id": string | null,"metadata": NonNullable<Json>,"model": string | null,"org_id": string,"project_id": string | null,"prompt_tokens": number,"reasoning_tokens": number,"request_id": string,"status": Database["public"]['Enums']["usage_status"],"stream": boolean,"total_tokens": number,"txid": unknown,"upstream_id": string | null,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "api_key_id"?: string | null,"cached_tokens"?: number,"completion_tokens"?: number,"cost_usd"?: number,"created_at"?: string,"credits"?: number,"estimated"?: boolean,"id"?: string,"kind"?: string,"latency_ms"?: number | null,"meeting_id"?: string | null,"metadata"?: NonNullable<Json>,"model"?: string | null,"org_id": string,"project_id"?: string | null,"prompt_tokens"?: number,"reasoning_tokens"?: number,"request_id": string,"status": Database["public"]['Enums']["usage_status"],"stream"?: boolean,"total_tokens"?: number,"txid"?: unknown,"upstream_id"?: string | null,"user_id"?: string | null
                  }
                  Update: {
                    "api_key_id"?: string | null,"cached_tokens"?: number,"completion_tokens"?: number,"cost_usd"?: number,"created_at"?: string,"credits"?: number,"estimated"?: boolean,"id"?: string,"kind"?: string,"latency_ms"?: number | null,"meeting_id"?: string | null,"metadata"?: NonNullable<Json>,"model"?: string | null,"org_id"?: string,"project_id"?: string | null,"prompt_tokens"?: number,"reasoning_tokens"?: number,"request_id"?: string,"status"?: Database["public"]['Enums']["usage_status"],"stream"?: boolean,"total_tokens"?: number,"txid"?: unknown,"upstream_id"?: string | null,"user_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "usage_events_api_key_id_fkey"
      columns: ["api_key_id"]
isOneToOne: false
      referencedRelation: "api_keys"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "usage_events_meeting_fkey"
      columns: ["org_id","meeting_id"]
isOneToOne: false
      referencedRelation: "meetings"
      referencedColumns: ["org_id","id"]
    },{
      foreignKeyName: "usage_events_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "usage_events_project_id_fkey"
      columns: ["project_id"]
isOneToOne: false
      referencedRelation: "projects"
      referencedColumns: ["id"]
    }
                  ]
                }
          }
          Views: {
            "credit_balances": {
                  Row: {
                    "org_id": string,"period_end": string | null,"period_start": string | null,"plan_remaining": number | null,"remaining": number,"reserved": number,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                           "org_id"?: string | null,"period_end"?: string | null,"period_start"?: string | null,"plan_remaining"?: never,"remaining"?: number | null,"reserved"?: number | null,"updated_at"?: string | null
                         }
                        Update: {
                           "org_id"?: string | null,"period_end"?: string | null,"period_start"?: string | null,"plan_remaining"?: never,"remaining"?: number | null,"reserved"?: number | null,"updated_at"?: string | null
                         }
                        Relationships: [
                    {
      foreignKeyName: "credit_accounts_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "organizations"
      referencedColumns: ["id"]
    }
                  ]
                }
          }
          Functions: {
            "accept_invitation":
{ Args: { "token": string }; Returns: string
                           },
"api_key_budgets":
{ Args: { "org_id": string }; Returns: {
              "api_key_id": string,"credit_limit": number,"credit_limit_period": string,"name": string,"period_start": string,"remaining": number,"reserved": number,"resets_at": string,"spent": number
            }[]
                           },
"begin_chat_request":
{ Args: { "choices"?: number,"client_ip"?: unknown,"completion_tokens_limit"?: number,"key_hash"?: string,"kind"?: string,"model": string,"org_id"?: string,"prompt_tokens_bound": number,"request_id": string,"ttl_seconds"?: number,"user_id"?: string }; Returns: Json
                           },
"cancel_meeting":
{ Args: { "meeting_id": string,"user_id": string }; Returns: Json
                           },
"cancel_trial":
{ Args: { "trial_id": string }; Returns: Json
                           },
"chat_meeting_check":
{ Args: { "key_hash"?: string,"meeting_id": string,"org_id"?: string,"user_id"?: string }; Returns: Json
                           },
"confirm_settlements":
{ Args: { "request_ids": Json }; Returns: Json
                           },
"create_api_key":
{ Args: { "allowed_ips"?: (unknown)[],"credit_limit"?: number,"credit_limit_period"?: string,"description"?: string,"expires_at"?: string,"models"?: (string)[],"name": string,"org_id": string,"project_id"?: string,"rpm"?: number,"tpm"?: number }; Returns: Json
                           },
"create_meeting":
{ Args: { "daily_room": Json,"enable_recording"?: boolean,"enable_transcription"?: boolean,"expires_at"?: string,"max_participants"?: number,"metadata"?: Json,"org_id": string,"privacy"?: string,"room_name": string,"scheduled_for"?: string,"user_id": string }; Returns: Json
                           },
"create_organization":
{ Args: { "name": string,"slug": string }; Returns: {
              "billing_status": Database["public"]['Enums']["billing_status"],
"created_at": string,
"created_by": string | null,
"id": string,
"name": string,
"personal": boolean,
"personal_owner_id": string | null,
"plan_id": string,
"slug": string,
"stripe_customer_id": string | null,
"updated_at": string
            }
                          SetofOptions: {
        from: "*"
        to: "organizations"
        isOneToOne: true
        isSetofReturn: false
      } },
"daily_apply_event":
{ Args: { "data": Json,"event_id": string,"event_ts": number,"event_type": string,"invalid"?: string,"payload": Json }; Returns: Json
                           },
"delete_organization":
{ Args: { "org_id": string }; Returns: undefined
                           },
"discard_api_key":
{ Args: { "key_id": string }; Returns: Json
                           },
"ensure_usage_partitions":
{ Args: { "months_ahead"?: number }; Returns: Json
                           },
"expire_trials":
{ Args: Record<PropertyKey, never>; Returns: Json
                           },
"finish_chat_request":
{ Args: { "api_key_id"?: string,"cached_tokens"?: number,"completion_tokens"?: number,"endpoint": string,"error"?: string,"estimated"?: boolean,"flush_follows"?: boolean,"http_status": number,"latency_ms"?: number,"meeting_id"?: string,"method"?: string,"model": string,"org_id": string,"project_id"?: string,"prompt_tokens"?: number,"reasoning_tokens"?: number,"request_id": string,"reserved"?: number,"status": string,"stream"?: boolean,"upstream_id"?: string,"user_id"?: string }; Returns: Json
                           },
"flush_metering":
{ Args: Record<PropertyKey, never>; Returns: undefined
                           },
"grant_credits":
{ Args: { "amount": number,"description"?: string,"expires_at"?: string,"external_id"?: string,"kind": Database["public"]['Enums']["credit_grant_kind"],"org_id": string }; Returns: Json
                           },
"health_check":
{ Args: Record<PropertyKey, never>; Returns: Json
                           },
"invite_member":
{ Args: { "email": string,"org_id": string,"role"?: Database["public"]['Enums']["member_role"] }; Returns: {
              "expires_at": string,"invitation_id": string,"token": string
            }[]
                           },
"leave_organization":
{ Args: { "org_id": string }; Returns: undefined
                           },
"list_models_for_caller":
{ Args: { "key_hash"?: string,"org_id"?: string,"user_id"?: string }; Returns: Json
                           },
"meeting_cancel_check":
{ Args: { "meeting_id": string,"user_id": string }; Returns: Json
                           },
"meeting_check":
{ Args: { "enable_recording"?: boolean,"expires_at"?: string,"max_participants"?: number,"org_id": string,"user_id": string }; Returns: Json
                           },
"meeting_costs":
{ Args: { "meeting_ids"?: (string)[],"org_id": string }; Returns: {
              "completion_tokens": number,"cost_usd": number,"credits": number,"duration_seconds": number,"ended_at": string,"meeting_id": string,"participant_count": number,"prompt_tokens": number,"requests": number,"room_name": string,"started_at": string,"status": Database["public"]['Enums']["meeting_status"],"total_tokens": number
            }[]
                           },
"meetings_to_reconcile":
{ Args: { "since"?: string }; Returns: Json
                           },
"organization_stripe_customer_id":
{ Args: { "org_id": string }; Returns: string
                           },
"reconcile_meeting":
{ Args: { "meeting_id": string,"recordings"?: Json,"sessions"?: Json,"transcripts"?: Json }; Returns: Json
                           },
"release_credits":
{ Args: { "reason"?: string,"request_id": string }; Returns: Json
                           },
"release_stale_reservations":
{ Args: { "older_than_seconds"?: number }; Returns: Json
                           },
"remove_member":
{ Args: { "org_id": string,"user_id": string }; Returns: undefined
                           },
"renew_chat_leases":
{ Args: { "lease_seconds"?: number,"request_ids": Json }; Returns: Json
                           },
"reserve_credits":
{ Args: { "amount": number,"org_id": string,"request_id": string,"ttl_seconds"?: number }; Returns: Json
                           },
"revoke_api_key":
{ Args: { "id": string }; Returns: Json
                           },
"room_state_get":
{ Args: { "meeting_id": string,"user_id": string }; Returns: Json
                           },
"room_state_put":
{ Args: { "expected_version"?: number,"key_id": string,"meeting_id": string,"secrets": Json,"state": Json,"user_id": string }; Returns: Json
                           },
"room_state_rotate":
{ Args: { "key_id": string,"meeting_id": string,"previous": Json,"secrets": Json }; Returns: Json
                           },
"rooms_to_rotate":
{ Args: { "batch"?: number,"key_id": string }; Returns: Json
                           },
"rotate_api_key":
{ Args: { "grace_seconds"?: number,"key_id": string }; Returns: Json
                           },
"set_unkey_key_id":
{ Args: { "key_id": string,"unkey_key_id": string }; Returns: Json
                           },
"settle_credits":
{ Args: { "charge": number,"request_id": string }; Returns: Json
                           },
"start_trial":
{ Args: { "name": string,"slug": string,"tier"?: string }; Returns: Json
                           },
"stripe_apply_event":
{ Args: { "api_version"?: string,"created": number,"data"?: Json,"event_id": string,"event_type": string,"fetched"?: boolean,"kind"?: string,"livemode"?: boolean,"object"?: Json }; Returns: Json
                           },
"stripe_billing_context":
{ Args: { "min_role"?: Database["public"]['Enums']["member_role"],"org_id": string,"price_id"?: string,"quantity"?: number,"user_id": string }; Returns: Json
                           },
"stripe_record_event_failure":
{ Args: { "api_version"?: string,"created": number,"error": string,"event_id": string,"event_type": string,"livemode"?: boolean,"object_id"?: string }; Returns: Json
                           },
"stripe_sync_objects":
{ Args: { "kind": string,"objects": Json }; Returns: Json
                           },
"unkey_key_state":
{ Args: { "key_id": string }; Returns: Json
                           },
"unkey_sync_plan":
{ Args: Record<PropertyKey, never>; Returns: Json
                           },
"update_api_key":
{ Args: { "allowed_ips"?: (unknown)[],"credit_limit"?: number,"credit_limit_period"?: string,"description"?: string,"expires_at"?: string,"key_id": string,"models"?: (string)[],"name"?: string,"rpm"?: number,"tpm"?: number }; Returns: Json
                           },
"update_member_role":
{ Args: { "org_id": string,"role": Database["public"]['Enums']["member_role"],"user_id": string }; Returns: {
              "created_at": string,
"org_id": string,
"role": Database["public"]['Enums']["member_role"],
"updated_at": string,
"user_id": string
            }
                          SetofOptions: {
        from: "*"
        to: "organization_members"
        isOneToOne: true
        isSetofReturn: false
      } },
"usage_for_key":
{ Args: { "key_hash": string }; Returns: Json
                           },
"usage_lifecycle":
{ Args: { "at"?: string,"stale_after_seconds"?: number }; Returns: Json
                           },
"usage_meter_claim":
{ Args: { "at"?: string,"lookback_days"?: number,"max_age_days"?: number }; Returns: Json
                           },
"usage_meter_record":
{ Args: { "answer"?: Json,"error"?: string,"http_status"?: number,"identifier": string,"outcome": string }; Returns: Json
                           },
"usage_requests_for_user":
{ Args: { "api_key_id"?: string,"before_at"?: string,"before_id"?: string,"model"?: string,"org_id": string,"page_size"?: number,"since"?: string,"status"?: string,"until"?: string,"user_id": string }; Returns: Json
                           },
"usage_rollup":
{ Args: { "wait"?: boolean }; Returns: Json
                           },
"usage_rollup_rebuild":
{ Args: { "from_day": string,"to_day": string }; Returns: Json
                           },
"usage_summary":
{ Args: { "days"?: number,"group_by"?: string,"org_id": string,"tz"?: string }; Returns: Json
                           },
"usage_summary_for_user":
{ Args: { "days"?: number,"group_by"?: string,"org_id": string,"tz"?: string,"user_id": string }; Returns: Json
                           }
          }
          Enums: {
            "billing_status": "active"|"inactive"|"canceled"|"past_due","credit_entry_kind": "grant"|"reservation"|"settlement"|"release"|"expiry"|"adjustment"|"late_settlement","credit_grant_kind": "plan"|"purchase"|"trial"|"adjustment","daily_event_status": "processed"|"ignored"|"failed","meeting_status": "scheduled"|"in_progress"|"ended"|"cancelled","member_role": "member"|"admin"|"owner","participant_role": "host"|"guest"|"bot","stripe_event_status": "processed"|"ignored"|"failed","subscription_status": "incomplete"|"incomplete_expired"|"trialing"|"active"|"past_due"|"canceled"|"unpaid"|"paused","usage_status": "succeeded"|"upstream_error"|"upstream_timeout"|"upstream_unreachable"|"upstream_interrupted"|"client_disconnected","user_role": "user"|"premium"|"admin"|"banned"
          }
          CompositeTypes: {
            [_ in never]: never
          }
        }
}

type DatabaseWithoutInternals = Omit<Database, '__InternalSupabase'>

type DefaultSchema = DatabaseWithoutInternals[Extract<keyof Database, "public">]

export type Tables<
  DefaultSchemaTableNameOrOptions extends
    | keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
        DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
      DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])[TableName] extends {
      Row: infer R
    }
    ? R
    : never
  : DefaultSchemaTableNameOrOptions extends keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
  ? (DefaultSchema["Tables"] & DefaultSchema["Views"])[DefaultSchemaTableNameOrOptions] extends {
      Row: infer R
    }
    ? R
    : never
  : never

export type TablesInsert<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Insert: infer I
    }
    ? I
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Insert: infer I
    }
    ? I
    : never
  : never

export type TablesUpdate<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Update: infer U
    }
    ? U
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Update: infer U
    }
    ? U
    : never
  : never

export type Enums<
  DefaultSchemaEnumNameOrOptions extends
    | keyof DefaultSchema["Enums"]
    | { schema: keyof DatabaseWithoutInternals },
  EnumName extends DefaultSchemaEnumNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"]
    : never = never
> = DefaultSchemaEnumNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"][EnumName]
  : DefaultSchemaEnumNameOrOptions extends keyof DefaultSchema["Enums"]
  ? DefaultSchema["Enums"][DefaultSchemaEnumNameOrOptions]
  : never

export type CompositeTypes<
  PublicCompositeTypeNameOrOptions extends
    | keyof DefaultSchema["CompositeTypes"]
    | { schema: keyof DatabaseWithoutInternals },
  CompositeTypeName extends PublicCompositeTypeNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"]
    : never = never
> = PublicCompositeTypeNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"][CompositeTypeName]
  : PublicCompositeTypeNameOrOptions extends keyof DefaultSchema["CompositeTypes"]
  ? DefaultSchema["CompositeTypes"][PublicCompositeTypeNameOrOptions]
  : never

export const Constants = {
  "public": {
          Enums: {
            "billing_status": ["active", "inactive", "canceled", "past_due"],"credit_entry_kind": ["grant", "reservation", "settlement", "release", "expiry", "adjustment", "late_settlement"],"credit_grant_kind": ["plan", "purchase", "trial", "adjustment"],"daily_event_status": ["processed", "ignored", "failed"],"meeting_status": ["scheduled", "in_progress", "ended", "cancelled"],"member_role": ["member", "admin", "owner"],"participant_role": ["host", "guest", "bot"],"stripe_event_status": ["processed", "ignored", "failed"],"subscription_status": ["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused"],"usage_status": ["succeeded", "upstream_error", "upstream_timeout", "upstream_unreachable", "upstream_interrupted", "client_disconnected"],"user_role": ["user", "premium", "admin", "banned"]
          }
        }
} as const
